//! `spec.runAs` of a local Workload: its processes run as that OS user (pgBackRest must run
//! as the owner of the data directory, `postgres`), with the user's groups and home. Only a
//! coffer running as root can start them; a user that does not exist is refused when the
//! Workload is applied and again when an action starts.

use std::ffi::CString;
use std::path::PathBuf;

/// An OS user, looked up.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    groups: Vec<libc::gid_t>,
    pub home: PathBuf,
}

impl RunAs {
    /// `user` from the user database (name or numeric uid), with its supplementary groups.
    pub fn lookup(user: &str) -> Result<RunAs, String> {
        let missing = || format!("spec.runAs: there is no user {user:?} on this machine");
        if user.is_empty() || user.contains('\0') {
            return Err(missing());
        }
        let name = CString::new(user).map_err(|_| missing())?;
        let mut buf = vec![0 as libc::c_char; 16 << 10];
        // SAFETY: getpwnam_r writes into `pw` and `buf`, both alive for the call; `found`
        // points at `pw` or is null.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() {
            return Err(missing());
        }
        // SAFETY: the strings point into `buf`, which is alive.
        let (home, pw_name) = unsafe {
            (
                std::ffi::CStr::from_ptr(pw.pw_dir)
                    .to_string_lossy()
                    .into_owned(),
                CString::from(std::ffi::CStr::from_ptr(pw.pw_name)),
            )
        };
        let mut groups = vec![0 as libc::gid_t; 64];
        let mut n = groups.len() as libc::c_int;
        // SAFETY: `groups` holds `n` entries; getgrouplist says how many it needs when more.
        let rc =
            unsafe { libc::getgrouplist(pw_name.as_ptr(), pw.pw_gid, groups.as_mut_ptr(), &mut n) };
        if rc < 0 {
            groups.resize(n.max(0) as usize, 0);
            unsafe {
                libc::getgrouplist(pw_name.as_ptr(), pw.pw_gid, groups.as_mut_ptr(), &mut n);
            }
        }
        groups.truncate(n.max(0) as usize);
        Ok(RunAs {
            user: user.to_string(),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            groups,
            home: PathBuf::from(home),
        })
    }

    /// [`RunAs::lookup`], refused unless this process may switch users.
    pub fn for_workload(user: &str) -> Result<RunAs, String> {
        let r = RunAs::lookup(user)?;
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 && euid != r.uid {
            return Err(format!(
                "spec.runAs: {user}: coffer runs as uid {euid}, and only root can start processes as another user; run coffer as root or leave runAs out"
            ));
        }
        Ok(r)
    }

    /// Start `cmd` as this user: its groups, then its group, then its uid (each a plain
    /// syscall between fork and exec), with its HOME, USER and LOGNAME.
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        cmd.env("HOME", &self.home)
            .env("USER", &self.user)
            .env("LOGNAME", &self.user);
        let (uid, gid, groups) = (self.uid, self.gid, self.groups.clone());
        // SAFETY: setgroups, setgid and setuid are async-signal-safe syscalls; the closure
        // allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(groups.len() as _, groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}
