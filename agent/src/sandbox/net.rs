//! Bring the loopback interface up inside a new network namespace (it
//! starts down). nix does not wrap SIOCSIFFLAGS, hence the one ioctl here.
#![allow(unsafe_code)]

use super::SandboxError;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use std::os::fd::AsRawFd;

pub fn loopback_up() -> Result<(), SandboxError> {
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(SandboxError::sys("open a socket to configure lo"))?;
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `sock` is an open socket and `req` a valid ifreq naming "lo";
    // SIOCGIFFLAGS only writes ifr_ifru.ifru_flags of it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(SandboxError::sys("read the flags of lo")(nix::Error::last()));
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union just above.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS reads the flags we set.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(SandboxError::sys("bring lo up")(nix::Error::last()));
    }
    Ok(())
}
