//! Loop devices by ioctl: attach a backing file by descriptor, detach,
//! query what a device is backed by, refresh its capacity, read its size.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
const LOOP_SET_CAPACITY: libc::c_ulong = 0x4C07;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn zeroed_info() -> LoopInfo64 {
    // SAFETY: plain-old-data struct; all zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// A loop device, by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoopDevice(pub u32);

/// What a loop device is backed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backing {
    /// Device of the filesystem holding the backing file.
    pub dev: u64,
    /// Inode of the backing file.
    pub ino: u64,
}

fn ioctl(fd: &File, request: libc::c_ulong, arg: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the callers pass requests whose argument is an integer or a
    // pointer to a live struct of the size the kernel expects.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

impl LoopDevice {
    /// `/dev/loopN`.
    pub fn node(&self) -> PathBuf {
        PathBuf::from(format!("/dev/loop{}", self.0))
    }

    fn open(&self) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(self.node())
    }

    /// Every loop device the kernel has.
    pub fn all() -> io::Result<Vec<LoopDevice>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/sys/block")? {
            let name = entry?.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix("loop"))
                .and_then(|n| n.parse().ok())
            {
                out.push(LoopDevice(n));
            }
        }
        Ok(out)
    }

    /// Attaches a free loop device to the open backing file, labelling it
    /// with `tag` (the kernel keeps it as the device's file name, at most 63 bytes).
    pub fn attach(backing: &File, tag: &str) -> io::Result<LoopDevice> {
        let mut info = zeroed_info();
        let tag = tag.as_bytes();
        let len = tag.len().min(63);
        info.lo_file_name[..len].copy_from_slice(&tag[..len]);
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/loop-control")?;
        for _ in 0..16 {
            let n = ioctl(&control, LOOP_CTL_GET_FREE, 0)? as u32;
            let dev = LoopDevice(n);
            let file = dev.open()?;
            let config = LoopConfig {
                fd: backing.as_raw_fd() as u32,
                block_size: 0,
                info,
                reserved: [0; 8],
            };
            match ioctl(
                &file,
                LOOP_CONFIGURE,
                &config as *const LoopConfig as libc::c_ulong,
            ) {
                Ok(_) => return Ok(dev),
                // Taken between GET_FREE and CONFIGURE by someone else: next one.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
                // Old kernel: the two-step way.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    ioctl(&file, LOOP_SET_FD, backing.as_raw_fd() as libc::c_ulong)?;
                    let info = zeroed_info();
                    ioctl(
                        &file,
                        LOOP_SET_STATUS64,
                        &info as *const LoopInfo64 as libc::c_ulong,
                    )?;
                    return Ok(dev);
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            "no free loop device",
        ))
    }

    /// What the device is backed by; `None` when it is not attached.
    pub fn backing(&self) -> io::Result<Option<Backing>> {
        Ok(self.status()?.map(|(b, _)| b))
    }

    /// What the device is backed by and the tag it was attached with.
    pub fn status(&self) -> io::Result<Option<(Backing, String)>> {
        let file = match self.open() {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut info = zeroed_info();
        match ioctl(
            &file,
            LOOP_GET_STATUS64,
            &mut info as *mut LoopInfo64 as libc::c_ulong,
        ) {
            Ok(_) => {
                let end = info.lo_file_name.iter().position(|&b| b == 0).unwrap_or(64);
                let tag = String::from_utf8_lossy(&info.lo_file_name[..end]).into_owned();
                Ok(Some((
                    Backing {
                        dev: info.lo_device,
                        ino: info.lo_inode,
                    },
                    tag,
                )))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Detaches the device. Succeeds if it is not attached.
    pub fn detach(&self) -> io::Result<()> {
        let file = self.open()?;
        match ioctl(&file, LOOP_CLR_FD, 0) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Re-reads the backing file's size.
    pub fn refresh_capacity(&self) -> io::Result<()> {
        ioctl(&self.open()?, LOOP_SET_CAPACITY, 0).map(|_| ())
    }

    /// Size in bytes.
    pub fn size(&self) -> io::Result<u64> {
        let mut size: u64 = 0;
        ioctl(
            &self.open()?,
            BLKGETSIZE64,
            &mut size as *mut u64 as libc::c_ulong,
        )?;
        Ok(size)
    }
}

/// The backing identity of an open file.
pub fn backing_of(file: &File) -> io::Result<Backing> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata()?;
    Ok(Backing {
        dev: m.dev(),
        ino: m.ino(),
    })
}
