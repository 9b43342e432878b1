//! Turns off Nagle's algorithm on the database's TCP sockets.
//!
//! sqlx 0.9.0 leaves it on (sqlx issue 4335; fixed upstream, not yet released), and
//! over TLS it sends each 16 KiB record with its own write. A statement larger than
//! one record (a batch of rotations or audit records) then sends its last, short
//! segment only once the server acknowledges the first, and the server delays that
//! acknowledgement by 40 ms: measured here, a 30-rotation batch took 44 ms to write
//! instead of 2. sqlx offers no hook on its sockets, so each new connection sweeps
//! the process's TCP sockets and sets `TCP_NODELAY` where it is off. The option is
//! harmless on any other TCP socket of the process (the HTTP server and clients set
//! it themselves); a descriptor closed and reused meanwhile only makes a call fail.

/// Sets `TCP_NODELAY` on every TCP socket of this process that lacks it; returns how
/// many it changed.
#[cfg(target_os = "linux")]
pub(crate) fn disable_nagle_everywhere() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| set_nodelay_if_tcp(fd))
        .count()
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn disable_nagle_everywhere() -> usize {
    0
}

/// True when `fd` is a TCP socket whose `TCP_NODELAY` was off and is now on. Other
/// descriptors (files, Unix sockets, closed numbers) make `getsockopt` fail.
#[cfg(target_os = "linux")]
fn set_nodelay_if_tcp(fd: i32) -> bool {
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: plain socket-option calls on a descriptor number with properly sized
    // buffers; a descriptor that is not a TCP socket makes them fail, nothing else.
    unsafe {
        if libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&mut on as *mut libc::c_int).cast(),
            &mut len,
        ) != 0
            || on != 0
        {
            return false;
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn a_socket_with_nagle_on_gets_nodelay_and_other_descriptors_are_left_alone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (served, _) = listener.accept().unwrap();
        client.set_nodelay(false).unwrap();
        served.set_nodelay(true).unwrap();
        let file = std::fs::File::open("/proc/self/status").unwrap();

        assert!(disable_nagle_everywhere() >= 1);
        assert!(client.nodelay().unwrap());
        assert!(served.nodelay().unwrap());
        // A file is left alone; a socket already done is not counted again.
        assert!(!set_nodelay_if_tcp(file.as_raw_fd()));
        assert!(!set_nodelay_if_tcp(client.as_raw_fd()));
    }
}
