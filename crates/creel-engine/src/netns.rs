//! Listening sockets inside another process's network namespace.
//!
//! With `network = "allowlist"` a job's container has no route out. creel creates the proxy's
//! listening socket *inside* the job's network namespace and accepts on it from the host, where
//! it makes the upstream connections. A forked, single-threaded child joins the namespace
//! (first the owning user namespace when rootless: the kernel allows that only to a
//! single-threaded process), binds `127.0.0.1:PORT`, and hands the listening descriptor back
//! over a Unix socket with `SCM_RIGHTS`. The same works for Podman and Docker, rootful and
//! rootless, because it only needs the container's pid.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::MetadataExt;

/// Binds `127.0.0.1:port` in the network namespace of the container process `pid`, making
/// sure the namespace is that process's: a pid read from a file or from the runtime may have
/// been reused by another process once the container ended. The process is pinned with a
/// pidfd; with `parent` (Podman: conmon's pid) it must be that process's child; its namespace
/// must not be this process's own (the host's); and it must still be alive after the
/// namespace was opened, so that the namespace cannot be a later process's.
pub fn listen_in_container(pid: i32, port: u16, parent: Option<i32>) -> io::Result<TcpListener> {
    let gone = || io::Error::other(format!("process {pid} is not the container's (it ended)"));
    let pinned = rustix::process::Pid::from_raw(pid)
        .ok_or_else(gone)
        .and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
                .map_err(io::Error::from)
        })?;
    if let Some(parent) = parent {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // `pid (comm) state ppid ...`: comm may hold anything but its last `)` ends it.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid != Some(parent) {
            return Err(gone());
        }
    }
    if std::fs::metadata(format!("/proc/{pid}/ns/net"))?.ino()
        == std::fs::metadata("/proc/self/ns/net")?.ino()
    {
        return Err(io::Error::other(format!(
            "process {pid} is in the host's network namespace: not the container's"
        )));
    }
    let listener = listen_in(pid, port)?;
    // Still alive: the namespace opened above was the pinned process's.
    let mut fds = [rustix::event::PollFd::new(
        &pinned,
        rustix::event::PollFlags::IN,
    )];
    let exited = rustix::event::poll(
        &mut fds,
        Some(&rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }),
    )
    .map_err(io::Error::from)?
        > 0;
    if exited {
        return Err(gone());
    }
    Ok(listener)
}

/// Binds `127.0.0.1:port` in the network namespace of `pid` and returns the listener.
pub fn listen_in(pid: i32, port: u16) -> io::Result<TcpListener> {
    let net = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    let user_path = format!("/proc/{pid}/ns/user");
    let join_user =
        std::fs::metadata(&user_path)?.ino() != std::fs::metadata("/proc/self/ns/user")?.ino();
    let user = std::fs::File::open(&user_path)?;

    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two descriptors into the array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let (parent_end, child_end) = (fds[0], fds[1]);
    // Everything the child needs is prepared before fork: it may not allocate.
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    let net_fd = net.as_raw_fd();
    let user_fd = user.as_raw_fd();

    // SAFETY: the child only makes async-signal-safe system calls and then _exits.
    let child = unsafe { libc::fork() };
    if child < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: closing the two descriptors socketpair gave us, used nowhere else.
        unsafe {
            libc::close(parent_end);
            libc::close(child_end);
        }
        return Err(e);
    }
    if child == 0 {
        // SAFETY: this is the freshly forked child, which child_bind ends with _exit.
        unsafe { child_bind(child_end, join_user, user_fd, net_fd, &addr) }
    }
    // SAFETY: the child's end is the child's now; the parent closes its copy.
    unsafe { libc::close(child_end) };
    let result = receive_fd(parent_end);
    // SAFETY: closing our own end, and reaping the child we forked (its pid).
    unsafe {
        libc::close(parent_end);
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
    }
    let fd = result?;
    // SAFETY: we own the descriptor we just received.
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}

/// The forked child: join the namespaces, bind, listen, send the descriptor (or errno).
///
/// # Safety
///
/// Only in the child of a `fork` of a multi-threaded process: it makes async-signal-safe
/// system calls only, allocates nothing, and never returns (`_exit`).
unsafe fn child_bind(
    sock: RawFd,
    join_user: bool,
    user_fd: RawFd,
    net_fd: RawFd,
    addr: &libc::sockaddr_in,
) -> ! {
    // SAFETY: see the function's safety section; every pointer is to memory this child owns.
    unsafe {
        let fail = |stage: i32| -> ! {
            let errno = *libc::__errno_location();
            let msg: [i32; 2] = [stage, errno];
            libc::write(sock, msg.as_ptr().cast(), 8);
            libc::_exit(1)
        };
        if join_user && libc::setns(user_fd, libc::CLONE_NEWUSER) != 0 {
            fail(1);
        }
        if libc::setns(net_fd, libc::CLONE_NEWNET) != 0 {
            fail(2);
        }
        let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            fail(3);
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            s,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            4,
        );
        if libc::bind(
            s,
            (addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        ) != 0
        {
            fail(4);
        }
        if libc::listen(s, 128) != 0 {
            fail(5);
        }
        let ok: [i32; 2] = [0, 0];
        let mut iov = libc::iovec {
            iov_base: ok.as_ptr() as *mut libc::c_void,
            iov_len: 8,
        };
        let mut cmsg_buf = [0u64; 4]; // aligned, >= CMSG_SPACE(sizeof(int))
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg_buf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(4) as usize;
        *(libc::CMSG_DATA(cmsg) as *mut libc::c_int) = s;
        if libc::sendmsg(sock, &msg, 0) < 0 {
            libc::_exit(2);
        }
        libc::_exit(0)
    }
}

fn receive_fd(sock: RawFd) -> io::Result<RawFd> {
    let mut data = [0i32; 2];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: 8,
    };
    let mut cmsg_buf = [0u64; 4];
    // SAFETY: a zeroed msghdr is valid; we point it at buffers that outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_buf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg_buf);
    // SAFETY: msg points at iov and cmsg_buf, both alive and large enough for the call.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n < 8 {
        return Err(io::Error::other(
            "the namespace helper died without an answer",
        ));
    }
    if data[0] != 0 {
        let stage = match data[0] {
            1 => "join the container's user namespace",
            2 => "join the container's network namespace",
            3 => "create a socket",
            4 => "bind 127.0.0.1 in the container",
            _ => "listen in the container",
        };
        let e = io::Error::from_raw_os_error(data[1]);
        return Err(io::Error::new(e.kind(), format!("cannot {stage}: {e}")));
    }
    // SAFETY: CMSG_FIRSTHDR reads the control buffer recvmsg filled.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Err(io::Error::other("no descriptor received"));
    }
    // SAFETY: cmsg is a non-null header inside cmsg_buf, which recvmsg filled; an SCM_RIGHTS
    // message's data is the descriptor.
    unsafe {
        if (*cmsg).cmsg_level != libc::SOL_SOCKET || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::other("unexpected control message"));
        }
        Ok(*(libc::CMSG_DATA(cmsg) as *const libc::c_int))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_in_our_own_namespace() {
        // Our own pid: same namespaces; the listener must accept a connection.
        let l = listen_in(std::process::id() as i32, 0).unwrap();
        let port = l.local_addr().unwrap().port();
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_s, _) = l.accept().unwrap();
    }

    #[test]
    fn a_container_process_must_be_what_it_claims() {
        let me = std::process::id() as i32;
        // The host's own namespace is never a container's.
        let e = listen_in_container(me, 0, None).unwrap_err();
        assert!(e.to_string().contains("host's network namespace"), "{e}");
        // A pid whose parent is not the container's conmon is not the container's process.
        let e = listen_in_container(me, 0, Some(1)).unwrap_err();
        assert!(e.to_string().contains("not the container's"), "{e}");
        // A pid that is not there at all.
        assert!(listen_in_container(i32::MAX - 1, 0, None).is_err());
    }
}
