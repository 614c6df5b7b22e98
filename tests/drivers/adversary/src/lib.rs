use wasmvol_driver_sdk::*;
struct HostPath;
impl Driver for HostPath {
    fn info() -> DriverInfo {
        DriverInfo::named("hostpath.wasmvol.io", "0.1.0", &[])
    }
}
export_driver!(HostPath);
