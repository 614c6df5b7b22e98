//! Driver outcomes as gRPC statuses: each driver error case has its own code.

use tonic::Status;

use crate::bindings::DriverError;
use crate::call::{error_parts, CallError};

/// The status a caller sees for a failed call.
pub fn from_call(e: CallError) -> Status {
    match e {
        CallError::Driver(d) => from_driver(d),
        CallError::InvalidRequest(m) => Status::invalid_argument(m),
        CallError::Deadline(_) => Status::deadline_exceeded(e.to_string()),
        CallError::Memory(_) => Status::resource_exhausted(e.to_string()),
        CallError::Trapped(_) | CallError::BadAnswer(_) | CallError::UnexpectedAnswer(_) => {
            Status::internal(e.to_string())
        }
        CallError::Busy(_) => Status::unavailable(e.to_string()),
        CallError::UnknownDriver(_) => Status::internal(e.to_string()),
    }
}

/// The code CSI uses for each driver error case (see [`error_parts`]).
pub fn from_driver(e: DriverError) -> Status {
    let (_, code, message) = error_parts(&e);
    Status::new(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn every_driver_error_keeps_its_code() {
        let cases = [
            (
                DriverError::InvalidArgument("m".into()),
                Code::InvalidArgument,
            ),
            (DriverError::NotFound("m".into()), Code::NotFound),
            (DriverError::AlreadyExists("m".into()), Code::AlreadyExists),
            (
                DriverError::FailedPrecondition("m".into()),
                Code::FailedPrecondition,
            ),
            (
                DriverError::ResourceExhausted("m".into()),
                Code::ResourceExhausted,
            ),
            (DriverError::OutOfRange("m".into()), Code::OutOfRange),
            (DriverError::Aborted("m".into()), Code::Aborted),
            (DriverError::Unavailable("m".into()), Code::Unavailable),
            (
                DriverError::PermissionDenied("m".into()),
                Code::PermissionDenied,
            ),
            (DriverError::Unimplemented("m".into()), Code::Unimplemented),
            (DriverError::Internal("m".into()), Code::Internal),
        ];
        for (e, code) in cases {
            let s = from_driver(e);
            assert_eq!((s.code(), s.message()), (code, "m"));
        }
        assert_eq!(
            from_call(CallError::Deadline(5)).code(),
            Code::DeadlineExceeded
        );
    }
}
