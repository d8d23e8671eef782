//! Process limits: raise the open-file soft limit so thousands of connections do not hit 1,024.

/// Raises RLIMIT_NOFILE's soft limit to its hard limit; logs and goes on if it cannot.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return tracing::warn!("cannot read the open-file limit");
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                tracing::debug!(from = limit.rlim_cur, to = limit.rlim_max, "raised the open-file limit");
            } else {
                tracing::warn!(limit = limit.rlim_cur, "cannot raise the open-file limit");
            }
        }
    }
}
