//! Leases on shared filesystems (NFS, Lustre, local disks): which runner
//! works on a sweep job, correct when many hosts share one results folder.
//!
//! A lease is one small file (`DIR/jobs/H.running`) whose content names its
//! holder ([`Holder`]: job, host, pid, random token, generation, creation
//! time) and whose modification time is its heartbeat. The protocol uses
//! only operations that are atomic on NFS (v3 and v4) as well as on local
//! filesystems: `link()` and `rename()` of whole files; never `O_EXCL`
//! creation, never a read-then-delete.
//!
//! - **Creation**: write a uniquely named file (`DIR/tmp/H.running.HOST.PID.TOKEN`)
//!   completely, fsync it, then `link()` it to the lease name. Success, or a
//!   link count of 2 on the unique file (NFS may lose the reply of a link
//!   that happened), means we own the lease; `EEXIST` means someone else
//!   does. The lease name therefore only ever points at complete content.
//! - **Liveness**: by heartbeat age only. The owner's heartbeat thread sets
//!   the lease's mtime every `expiry / 10`. A lease is expired when its
//!   mtime is more than the expiry in the past, or more than the expiry in
//!   the future (a host whose clock runs ahead), or when this process has
//!   watched it stay unchanged (same inode, size and mtime) for longer than
//!   the expiry by its own monotonic clock (so a dead lease stamped a little
//!   in the future expires too). Content is never needed to judge liveness:
//!   an unreadable lease is live until it expires like any other. Pids are
//!   never consulted (they mean nothing across hosts and are reused on one).
//! - **Takeover** of an expired lease: `rename()` it to a unique graveyard
//!   name (only one runner's rename of an inode can succeed), then compare
//!   what was renamed (inode, size, mtime) with what was judged expired. If
//!   they match, the graveyard file is deleted and a new lease is created
//!   with generation + 1; if not (the owner heartbeated, or another runner
//!   took over first), the renamed file is linked back to the lease name.
//! - **Fencing**: [`Leases::holds`] checks that the lease name still points at
//!   our inode and holds our token; the runner calls it right before it
//!   publishes. Publishing itself is [`link_new`]: `link()` of the complete
//!   result to its final name, which fails when a result already exists, so
//!   a result is published at most once whatever the timing.
//! - **Release** removes the lease only if it still holds our token, again
//!   by renaming it away first and linking it back when it was not ours.
//!
//! Correctness (one lease holder at a time, one publication per job) never
//! depends on clocks; clocks only decide when an abandoned lease may be taken
//! over. Hosts should agree on the time to within the expiry (NTP): a holder
//! whose clock is off by more loses its leases to takeovers, which fencing
//! makes harmless but wasteful. The expiry must also exceed the attribute
//! caching of NFS clients (`acregmax`, 60 s by default) plus the heartbeat
//! interval; the default is 300 s.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Environment variable that sets the lease expiry in seconds (default 300).
pub const EXPIRY_ENV: &str = "HOST_SWEEP_LEASE_S";
/// The default lease expiry.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(300);

/// This machine's name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `unknown`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Timing of leases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// A lease whose heartbeat is older than this may be taken over.
    pub expiry: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { expiry: DEFAULT_EXPIRY }
    }
}

impl Policy {
    /// A policy with this expiry.
    pub fn new(expiry: Duration) -> Policy {
        Policy { expiry }
    }

    /// The policy `$HOST_SWEEP_LEASE_S` (seconds, may be fractional) asks for, else the default.
    pub fn from_env() -> Result<Policy, String> {
        Policy::parse(std::env::var(EXPIRY_ENV).ok().as_deref())
    }

    /// The policy for a value of `$HOST_SWEEP_LEASE_S` (None: unset).
    pub fn parse(value: Option<&str>) -> Result<Policy, String> {
        let Some(v) = value else { return Ok(Policy::default()) };
        match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && (0.05..=1e7).contains(&s) => Ok(Policy::new(Duration::from_secs_f64(s))),
            _ => Err(format!(
                "environment {EXPIRY_ENV}=`{v}`: expected the lease expiry in seconds, between 0.05 and 1e7 \
                 (default 300)"
            )),
        }
    }

    /// Interval of the owner's heartbeat: a tenth of the expiry.
    pub fn heartbeat(&self) -> Duration {
        self.expiry / 10
    }

    /// Interval at which a waiting runner looks at a busy lease again.
    pub fn poll(&self) -> Duration {
        (self.expiry / 20).clamp(Duration::from_millis(20), Duration::from_secs(5))
    }
}

/// What a lease file says: who holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    /// The job (its hash).
    pub job: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id on that host (for people; never used to judge liveness).
    pub pid: u32,
    /// Random token unique to this lease.
    pub token: String,
    /// 1 for a new lease, one more than the expired lease's for a takeover.
    pub generation: u64,
    /// Creation time (Unix seconds): the first heartbeat; later ones are the file's mtime.
    pub created: u64,
}

impl Holder {
    /// `HOST pid PID (generation G)`.
    pub fn describe(&self) -> String {
        format!("{} pid {} (lease generation {})", self.host, self.pid, self.generation)
    }
}

/// Identity and heartbeat of a lease file as seen at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: SystemTime,
}

#[cfg(unix)]
fn file_id(m: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn file_id(_: &fs::Metadata) -> (u64, u64) {
    (0, 0)
}

#[cfg(unix)]
fn link_count(m: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.nlink()
}

#[cfg(not(unix))]
fn link_count(_: &fs::Metadata) -> u64 {
    1
}

impl Stamp {
    fn of(m: &fs::Metadata) -> io::Result<Stamp> {
        let (dev, ino) = file_id(m);
        Ok(Stamp { dev, ino, size: m.len(), mtime: m.modified()? })
    }
}

/// Seconds from `t` to now (negative when `t` lies in the future).
pub fn age_of(t: SystemTime) -> f64 {
    match SystemTime::now().duration_since(t) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Age in seconds after which a takeover lock counts as left behind by a dead runner (a takeover
/// takes milliseconds).
const TAKEOVER_STALE_S: f64 = 30.0;

/// The takeover lock of the lease at `path`: `<lease>.takeover` beside it.
fn takeover_lock(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".takeover");
    path.with_file_name(name)
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Someone's lease as seen now.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Its content, when readable.
    pub holder: Option<Holder>,
    /// Its identity and heartbeat.
    pub stamp: Stamp,
    /// Seconds since its heartbeat (negative when stamped in the future).
    pub age: f64,
    /// Why it is expired, or None while it is live.
    pub expired: Option<String>,
}

impl Seen {
    /// Who holds it, for messages.
    pub fn describe(&self) -> String {
        match &self.holder {
            Some(h) => h.describe(),
            None => "an unknown holder (unreadable lease)".into(),
        }
    }
}

/// A lease this process owns.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The lease file.
    pub path: PathBuf,
    /// What it says.
    pub holder: Holder,
    /// The expired lease this one replaced: who held it and why it was expired.
    pub took_over: Option<String>,
    id: (u64, u64),
}

/// The outcome of [`Leases::acquire`].
#[derive(Debug)]
pub enum Acquired {
    /// We own it.
    Owned(Lease),
    /// Another runner's live lease.
    Held(Seen),
}

/// Opens `path` and reads it through one handle: its metadata and its bytes (one inode).
fn open_read(path: &Path) -> io::Result<(fs::Metadata, Vec<u8>)> {
    let mut f = File::open(path)?;
    let m = f.metadata()?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok((m, bytes))
}

/// A name part safe in a file name (host names may hold anything).
fn safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(64).collect()
}

/// A random token (16 hex digits from the operating system's entropy: tokens must differ across
/// hosts, so they are the one random thing here without a seed).
pub fn new_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Makes the entries of `dir` durable (best effort: not every platform opens folders).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Creates `path` (which must not exist) with `bytes`, flushed to disk.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let err = |e: io::Error| format!("cannot write {}: {e}; check that the results folder is writable", path.display());
    let mut f = OpenOptions::new().write(true).create_new(true).open(path).map_err(err)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| {
        // Ours (create_new made it): remove the torn file.
        let _ = fs::remove_file(path);
        err(e)
    })
}

/// Gives the complete file `src` the new name `dst` unless `dst` exists (hard link, never
/// replacing): Ok(true) when this call made `dst`. A link whose reply NFS lost shows as a link
/// count of 2 on `src` (whose name is unique to the caller), and counts as made.
pub fn link_new(src: &Path, dst: &Path) -> Result<bool, String> {
    match fs::hard_link(src, dst) {
        Ok(()) => Ok(true),
        Err(e) => {
            if fs::metadata(src).is_ok_and(|m| link_count(&m) >= 2) {
                Ok(true)
            } else if e.kind() == io::ErrorKind::AlreadyExists {
                Ok(false)
            } else {
                Err(format!("cannot link {} to {}: {e}", src.display(), dst.display()))
            }
        }
    }
}

/// Removes the files in `dir` whose mtime is more than `older_than` away from now (in either
/// direction): what killed runners left in the scratch folder. Returns how many.
pub fn remove_old(dir: &Path, older_than: Duration) -> usize {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    let limit = older_than.as_secs_f64();
    let mut n = 0;
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_file() && m.modified().is_ok_and(|t| age_of(t).abs() > limit) && fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}

/// The leases of one results folder, as one process sees them.
pub struct Leases {
    policy: Policy,
    /// Folder of unique and graveyard files (same filesystem as the leases).
    scratch: PathBuf,
    /// Leases watched by this process: their last stamp and when it was first seen.
    watched: Mutex<HashMap<PathBuf, (Stamp, Instant)>>,
}

impl Leases {
    /// Leases with `policy`, using the folder `scratch` for unique and graveyard files.
    pub fn new(policy: Policy, scratch: PathBuf) -> Leases {
        Leases { policy, scratch, watched: Mutex::new(HashMap::new()) }
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// A unique file name in the scratch folder for `path`: `NAME.KIND.HOST.PID.TOKEN`.
    fn unique(&self, path: &Path, kind: &str, token: &str) -> PathBuf {
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        self.scratch.join(format!("{name}.{kind}.{}.{}.{token}", safe(&hostname()), std::process::id()))
    }

    /// The lease at `path` (None when there is none) and whether it is expired.
    pub fn inspect(&self, path: &Path) -> Result<Option<Seen>, String> {
        let (m, bytes) = match open_read(path) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.watched.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
                return Ok(None);
            }
            Err(e) => return Err(format!("cannot read lease {}: {e}", path.display())),
        };
        let stamp = Stamp::of(&m).map_err(|e| format!("lease {}: no modification time: {e}", path.display()))?;
        let holder = serde_json::from_slice::<Holder>(&bytes).ok();
        let age = age_of(stamp.mtime);
        let watched_for = {
            let mut w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            match w.get(path) {
                Some((s, since)) if *s == stamp => since.elapsed().as_secs_f64(),
                _ => {
                    w.insert(path.to_path_buf(), (stamp, Instant::now()));
                    0.0
                }
            }
        };
        let e = self.policy.expiry.as_secs_f64();
        let expired = if age > e {
            Some(format!("its heartbeat is {age:.1} s old (expiry {e} s)"))
        } else if -age > e {
            Some(format!("its heartbeat is stamped {:.1} s in the future (clock skew; expiry {e} s)", -age))
        } else if watched_for > e {
            Some(format!("it has not changed for {watched_for:.1} s (expiry {e} s)"))
        } else {
            None
        };
        Ok(Some(Seen { holder, stamp, age, expired }))
    }

    /// Creates the lease at `path` if there is none: Some(lease) when this call made it.
    fn create(&self, path: &Path, job: &str, generation: u64) -> Result<Option<Lease>, String> {
        let holder = Holder {
            job: job.to_string(),
            host: hostname(),
            pid: std::process::id(),
            token: new_token(),
            generation,
            created: unix_now(),
        };
        let text = serde_json::to_string(&holder).map_err(|e| e.to_string())? + "\n";
        if !self.link_new(path, "lease", &holder.token, text.as_bytes())? {
            return Ok(None);
        }
        if let Some(d) = path.parent() {
            sync_dir(d);
        }
        // The name points at our inode now; read it back through one handle for its identity.
        match open_read(path) {
            Ok((m, bytes)) if serde_json::from_slice::<Holder>(&bytes).is_ok_and(|h| h.token == holder.token) => {
                Ok(Some(Lease { path: path.to_path_buf(), holder, took_over: None, id: file_id(&m) }))
            }
            _ => Ok(None),
        }
    }

    /// Creates `path` holding `bytes`, atomically and only if it does not exist: a unique
    /// scratch file hard-linked to the name (on NFS a lost reply of a link that happened is told
    /// by the link count). Ok(false) when the name exists, or when the scratch file vanished
    /// (collected as garbage while this process was paused).
    fn link_new(&self, path: &Path, what: &str, token: &str, bytes: &[u8]) -> Result<bool, String> {
        let unique = self.unique(path, "new", token);
        write_new(&unique, bytes)?;
        let linked = fs::hard_link(&unique, path);
        let unique_meta = fs::metadata(&unique);
        let made = linked.is_ok() || unique_meta.as_ref().is_ok_and(|m| link_count(m) >= 2);
        let _ = fs::remove_file(&unique);
        match linked {
            _ if made => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound && unique_meta.is_err() => Ok(false),
            Err(e) => Err(format!("cannot create {what} {}: {e}", path.display())),
            Ok(()) => Ok(false),
        }
    }

    /// Removes the expired lease `seen` from `path`: true when this call removed exactly the
    /// file `seen` describes, unchanged since. Only the holder of the takeover lock
    /// (`<lease>.takeover`, created like a lease) moves an expired lease, after checking under the
    /// lock that the name still points at it: a lease created meanwhile by another runner is
    /// never moved aside (it could only appear after the expired one was removed, which only the
    /// lock holder does). Ok(false) without the lock (another runner is taking over).
    fn take_over(&self, path: &Path, seen: &Seen) -> Result<bool, String> {
        let lock = takeover_lock(path);
        let token = new_token();
        if !self.link_new(&lock, "takeover lock", &token, token.as_bytes())? {
            self.clear_stale_lock(&lock);
            return Ok(false);
        }
        let result = match self.inspect(path)? {
            Some(now) if now.stamp == seen.stamp && now.expired.is_some() => {
                self.remove_if_unchanged(path, seen.stamp, "expired", "expired lease")
            }
            _ => Ok(false),
        };
        // Our lock only (it could have been judged left behind and replaced after
        // TAKEOVER_STALE_S, far beyond the milliseconds a takeover takes).
        if fs::read(&lock).is_ok_and(|b| b == token.as_bytes()) {
            let _ = fs::remove_file(&lock);
        }
        result
    }

    /// Removes a takeover lock left behind by a runner that died holding it (older than
    /// [`TAKEOVER_STALE_S`]), moving it aside first and putting back anything newer.
    fn clear_stale_lock(&self, lock: &Path) {
        let Ok(m) = fs::metadata(lock) else { return };
        let Ok(stamp) = Stamp::of(&m) else { return };
        if age_of(stamp.mtime).abs() <= TAKEOVER_STALE_S {
            return;
        }
        let _ = self.remove_if_unchanged(lock, stamp, "stale", "stale takeover lock");
    }

    /// Removes the file at `path` if it is still the one `stamp` describes (an expired lease
    /// under the takeover lock, or a stale lock): renamed to a unique graveyard name, then
    /// checked; anything else is put back. True when it was exactly that file.
    fn remove_if_unchanged(&self, path: &Path, stamp: Stamp, kind: &str, what: &str) -> Result<bool, String> {
        let grave = self.unique(path, kind, &new_token());
        match fs::rename(path, &grave) {
            Ok(()) => {}
            // NFS may lose the reply of a rename that happened.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !grave.exists() => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot move {what} {} aside: {e}", path.display())),
        }
        let same = fs::metadata(&grave).ok().and_then(|m| Stamp::of(&m).ok()) == Some(stamp);
        if !same {
            // The owner heartbeated, or another runner got there first: put it back (unless a
            // new file already took the name).
            let _ = fs::hard_link(&grave, path);
        }
        let _ = fs::remove_file(&grave);
        Ok(same)
    }

    /// Acquires the lease at `path` for job `job`: creates it when absent, takes it over when
    /// expired, else reports its live holder.
    pub fn acquire(&self, path: &Path, job: &str) -> Result<Acquired, String> {
        let mut generation = 1;
        let mut took_over = None;
        for attempt in 0..64u32 {
            if let Some(mut lease) = self.create(path, job, generation)? {
                lease.took_over = took_over;
                return Ok(Acquired::Owned(lease));
            }
            let Some(seen) = self.inspect(path)? else { continue };
            let Some(why) = &seen.expired else { return Ok(Acquired::Held(seen)) };
            if self.take_over(path, &seen)? {
                generation = seen.holder.as_ref().map_or(1, |h| h.generation + 1);
                took_over = Some(format!("the expired lease of {}: {why}", seen.describe()));
            } else {
                // Another runner holds the takeover lock: give it time to finish.
                std::thread::sleep(Duration::from_millis(1 << attempt.min(6)));
            }
        }
        Err(format!(
            "lease {}: still changing after 64 tries to acquire it; is another program rewriting it?",
            path.display()
        ))
    }

    /// Whether `lease` is still ours: its name points at our file and that file holds our token.
    pub fn holds(&self, lease: &Lease) -> bool {
        match open_read(&lease.path) {
            Ok((m, bytes)) => {
                file_id(&m) == lease.id
                    && serde_json::from_slice::<Holder>(&bytes).is_ok_and(|h| h.token == lease.holder.token)
            }
            Err(_) => false,
        }
    }

    /// Sets the heartbeat (mtime) of `lease` to now if it is still ours; false when it is not.
    pub fn heartbeat(&self, lease: &Lease) -> bool {
        let beat = || -> io::Result<bool> {
            let mut f = OpenOptions::new().read(true).write(true).open(&lease.path)?;
            let m = f.metadata()?;
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            if file_id(&m) != lease.id
                || !serde_json::from_slice::<Holder>(&bytes).is_ok_and(|h| h.token == lease.holder.token)
            {
                return Ok(false);
            }
            // Through the handle of our own inode: never touches another runner's lease.
            f.set_modified(SystemTime::now())?;
            Ok(true)
        };
        beat().unwrap_or(false)
    }

    /// Removes `lease` if it is still ours; Ok(false) when it no longer was (left alone).
    pub fn release(&self, lease: &Lease) -> Result<bool, String> {
        if !self.holds(lease) {
            return Ok(false);
        }
        let grave = self.unique(&lease.path, "released", &lease.holder.token);
        match fs::rename(&lease.path, &grave) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && !grave.exists() => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot release lease {}: {e}", lease.path.display())),
        }
        let ours = open_read(&grave).is_ok_and(|(m, bytes)| {
            file_id(&m) == lease.id
                && serde_json::from_slice::<Holder>(&bytes).is_ok_and(|h| h.token == lease.holder.token)
        });
        if !ours {
            // Taken over between the check and the rename: give it back.
            let _ = fs::hard_link(&grave, &lease.path);
        }
        let _ = fs::remove_file(&grave);
        if let Some(d) = lease.path.parent() {
            sync_dir(d);
        }
        Ok(ours)
    }

    /// Removes the lease at `path` if it is expired (a runner killed after publishing leaves
    /// one beside its result); true when this call removed it.
    pub fn clear_expired(&self, path: &Path) -> Result<bool, String> {
        match self.inspect(path)? {
            Some(seen) if seen.expired.is_some() => self.take_over(path, &seen),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder with `jobs/` and `tmp/` (removed when the returned guard drops); returns
    /// (guard, lease path, scratch folder).
    fn folder(name: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let guard = tempfile::Builder::new().prefix(&format!("host-lease-{name}-")).tempdir().unwrap();
        let d = guard.path();
        fs::create_dir_all(d.join("jobs")).unwrap();
        fs::create_dir_all(d.join("tmp")).unwrap();
        let (lease, tmp) = (d.join("jobs").join("abc.running"), d.join("tmp"));
        (guard, lease, tmp)
    }

    fn leases(scratch: &Path, expiry_s: f64) -> Leases {
        Leases::new(Policy::new(Duration::from_secs_f64(expiry_s)), scratch.to_path_buf())
    }

    fn owned(a: Acquired) -> Lease {
        match a {
            Acquired::Owned(l) => l,
            Acquired::Held(s) => panic!("expected to own the lease, held by {}", s.describe()),
        }
    }

    fn held(a: Acquired) -> Seen {
        match a {
            Acquired::Held(s) => s,
            Acquired::Owned(l) => panic!("expected a held lease, got our own {:?}", l.holder),
        }
    }

    /// Sets the mtime of `p` to now + `offset_s` seconds.
    fn stamp_at(p: &Path, offset_s: f64) {
        let t = if offset_s >= 0.0 {
            SystemTime::now() + Duration::from_secs_f64(offset_s)
        } else {
            SystemTime::now() - Duration::from_secs_f64(-offset_s)
        };
        File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
        v.sort();
        v
    }

    #[test]
    fn policy_parses_seconds_and_rejects_nonsense() {
        assert_eq!(Policy::parse(None).unwrap().expiry, Duration::from_secs(300));
        assert_eq!(Policy::parse(Some(" 2.5 ")).unwrap().expiry, Duration::from_millis(2500));
        assert_eq!(Policy::parse(Some("2")).unwrap().heartbeat(), Duration::from_millis(200));
        for bad in ["", "x", "0", "-1", "inf", "NaN", "0.01"] {
            let e = Policy::parse(Some(bad)).unwrap_err();
            assert!(e.contains(EXPIRY_ENV) && e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn create_hold_release() {
        let (_dir, p, tmp) = folder("basic");
        let a = leases(&tmp, 60.0);
        let b = leases(&tmp, 60.0);
        let la = owned(a.acquire(&p, "abc").unwrap());
        assert_eq!((la.holder.generation, la.holder.job.as_str(), la.holder.pid), (1, "abc", std::process::id()));
        assert!(la.took_over.is_none());
        // The lease file holds exactly the holder; the unique file is gone.
        let on_disk: Holder = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(on_disk, la.holder);
        assert!(names(&tmp).is_empty(), "{:?}", names(&tmp));
        // Someone else sees it live, held by us.
        let s = held(b.acquire(&p, "abc").unwrap());
        assert_eq!(s.holder.as_ref(), Some(&la.holder));
        assert!(s.expired.is_none() && s.age.abs() < 60.0);
        assert!(a.holds(&la) && a.heartbeat(&la));
        assert!(a.release(&la).unwrap());
        assert!(!p.exists());
        assert!(!a.holds(&la) && !a.heartbeat(&la));
        assert!(!a.release(&la).unwrap());
        // Free again: a new lease with a new token.
        let lb = owned(b.acquire(&p, "abc").unwrap());
        assert_ne!(lb.holder.token, la.holder.token);
        assert_eq!(lb.holder.generation, 1);
        assert!(names(&tmp).is_empty());
    }

    #[test]
    fn expired_lease_is_taken_over_and_its_old_owner_is_fenced_off() {
        let (_dir, p, tmp) = folder("takeover");
        let a = leases(&tmp, 60.0);
        let b = leases(&tmp, 60.0);
        let la = owned(a.acquire(&p, "abc").unwrap());
        // Its owner stops heartbeating: 61 s later it is expired.
        stamp_at(&p, -61.0);
        let lb = owned(b.acquire(&p, "abc").unwrap());
        assert_eq!(lb.holder.generation, 2);
        let why = lb.took_over.as_deref().unwrap();
        assert!(why.contains(&la.holder.host) && why.contains("generation 1") && why.contains("s old"), "{why}");
        // The old owner comes back: not its lease any more; its heartbeat and release leave it alone.
        assert!(!a.holds(&la));
        assert!(!a.heartbeat(&la));
        assert!(!a.release(&la).unwrap());
        assert!(b.holds(&lb));
        let on_disk: Holder = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(on_disk, lb.holder);
        // A takeover of the takeover: generation 3.
        stamp_at(&p, -61.0);
        let la2 = owned(a.acquire(&p, "abc").unwrap());
        assert_eq!(la2.holder.generation, 3);
        assert!(!b.holds(&lb) && a.holds(&la2));
        assert!(names(&tmp).is_empty(), "{:?}", names(&tmp));
    }

    #[test]
    fn takeover_puts_back_a_lease_that_changed_since_it_was_judged() {
        let (_dir, p, tmp) = folder("putback");
        let a = leases(&tmp, 60.0);
        let b = leases(&tmp, 60.0);
        let la = owned(a.acquire(&p, "abc").unwrap());
        stamp_at(&p, -61.0);
        let seen = b.inspect(&p).unwrap().unwrap();
        assert!(seen.expired.is_some());
        // Its owner heartbeats after b judged it expired, before b's rename.
        assert!(a.heartbeat(&la));
        assert!(!b.take_over(&p, &seen).unwrap());
        // Put back: the same file, still the owner's.
        assert!(a.holds(&la));
        assert!(held(b.acquire(&p, "abc").unwrap()).expired.is_none());
        // Another runner replaced it meanwhile (a new inode): put back too, untouched.
        assert!(a.release(&la).unwrap());
        let lb = owned(b.acquire(&p, "abc").unwrap());
        assert!(!a.take_over(&p, &seen).unwrap());
        assert!(b.holds(&lb));
        assert!(names(&tmp).is_empty(), "{:?}", names(&tmp));
    }

    #[test]
    fn unreadable_lease_is_live_until_it_expires() {
        let (_dir, p, tmp) = folder("unreadable");
        let a = leases(&tmp, 60.0);
        // A half-written lease (as O_EXCL-then-write leaves it): fresh, so live.
        fs::write(&p, b"").unwrap();
        let s = held(a.acquire(&p, "abc").unwrap());
        assert!(s.holder.is_none() && s.expired.is_none());
        assert_eq!(s.describe(), "an unknown holder (unreadable lease)");
        assert_eq!(fs::read(&p).unwrap(), b"");
        fs::write(&p, b"{\"host\": \"h").unwrap();
        assert!(held(a.acquire(&p, "abc").unwrap()).holder.is_none());
        // Silent past the expiry: taken over, generation unknown so 1.
        stamp_at(&p, -61.0);
        let l = owned(a.acquire(&p, "abc").unwrap());
        assert_eq!(l.holder.generation, 1);
        assert!(l.took_over.unwrap().contains("an unknown holder (unreadable lease)"));
    }

    #[test]
    fn clock_skew_and_pid_reuse() {
        let (_dir, p, tmp) = folder("skew");
        let a = leases(&tmp, 60.0);
        let write = |h: &Holder| fs::write(&p, serde_json::to_string(h).unwrap()).unwrap();
        // This host, this (live) process's pid, but no heartbeat for 2 minutes: expired.
        let mut h = Holder {
            job: "abc".into(),
            host: hostname(),
            pid: std::process::id(),
            token: "0123456789abcdef".into(),
            generation: 4,
            created: 0,
        };
        write(&h);
        stamp_at(&p, -120.0);
        let l = owned(a.acquire(&p, "abc").unwrap());
        assert_eq!(l.holder.generation, 5);
        assert!(a.release(&l).unwrap());
        // Stamped 61 s in the future (a clock running ahead): expired.
        h.generation = 9;
        write(&h);
        stamp_at(&p, 61.0);
        let l = owned(a.acquire(&p, "abc").unwrap());
        assert_eq!(l.holder.generation, 10);
        assert!(l.took_over.as_deref().unwrap().contains("in the future"));
        assert!(a.release(&l).unwrap());
        // Stamped 30 s in the future (within the expiry): live at first sight ...
        let b = leases(&tmp, 0.3);
        write(&h);
        stamp_at(&p, 0.25);
        assert!(held(b.acquire(&p, "abc").unwrap()).expired.is_none());
        // ... and expired once watched unchanged for longer than the expiry.
        std::thread::sleep(Duration::from_millis(350));
        let s = b.inspect(&p).unwrap().unwrap();
        assert!(s.expired.as_deref().is_some_and(|w| w.contains("not changed")), "{s:?}");
        assert_eq!(owned(b.acquire(&p, "abc").unwrap()).holder.generation, 10);
    }

    #[test]
    fn publishing_links_once_and_never_replaces() {
        let (_dir, p, tmp) = folder("publish");
        let dst = p.with_file_name("abc.json");
        let (x, y) = (tmp.join("x"), tmp.join("y"));
        write_new(&x, b"first").unwrap();
        write_new(&y, b"second").unwrap();
        assert!(write_new(&y, b"again").unwrap_err().contains("cannot write"));
        assert!(link_new(&x, &dst).unwrap());
        assert!(!link_new(&y, &dst).unwrap());
        assert_eq!(fs::read(&dst).unwrap(), b"first");
        // A link whose reply was lost: the source already has a second name.
        assert!(link_new(&x, &dst).unwrap());
        let e = link_new(&tmp.join("missing"), &tmp.join("z")).unwrap_err();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn old_scratch_files_are_removed_young_ones_kept() {
        let (_dir, _, tmp) = folder("gc");
        for (name, off) in [("old", -10.0), ("future", 10.0), ("young", -1.0)] {
            fs::write(tmp.join(name), b"x").unwrap();
            stamp_at(&tmp.join(name), off);
        }
        assert_eq!(remove_old(&tmp, Duration::from_secs(5)), 2);
        assert_eq!(names(&tmp), ["young"]);
    }

    #[test]
    fn a_takeover_lock_left_by_a_dead_runner_is_cleared() {
        // An expired lease and a takeover lock 60 s old (its runner died mid-takeover): the lock
        // is cleared (older than TAKEOVER_STALE_S) and the lease taken over; nothing is left.
        let (_dir, p, tmp) = folder("lock");
        fs::write(&p, "{\"stale\": 1}").unwrap();
        stamp_at(&p, -120.0);
        let lock = takeover_lock(&p);
        fs::write(&lock, "0123456789abcdef").unwrap();
        stamp_at(&lock, -60.0);
        let l = owned(leases(&tmp, 60.0).acquire(&p, "abc").unwrap());
        assert!(l.took_over.as_deref().is_some_and(|t| t.contains("expired lease")), "{:?}", l.took_over);
        assert!(!lock.exists());
        assert!(names(&tmp).is_empty(), "{:?}", names(&tmp));
    }

    #[test]
    fn racing_acquirers_get_one_lease() {
        // 8 threads, each its own `Leases` (as separate runners), race for a lease that is absent
        // or expired, 100 rounds: exactly one owns it each round.
        let (_dir, p, tmp) = folder("race");
        for round in 0..100 {
            let expired = round % 2 == 1;
            if expired {
                fs::write(&p, format!("{{\"stale\": {round}}}")).unwrap();
                stamp_at(&p, -120.0);
            } else {
                let _ = fs::remove_file(&p);
            }
            let barrier = std::sync::Barrier::new(8);
            let wins: Vec<Option<Lease>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            let l = leases(&tmp, 60.0);
                            barrier.wait();
                            match l.acquire(&p, "abc").unwrap() {
                                Acquired::Owned(lease) => Some(lease),
                                Acquired::Held(s) => {
                                    assert!(s.expired.is_none(), "round {round}: {s:?}");
                                    None
                                }
                            }
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let won: Vec<&Lease> = wins.iter().flatten().collect();
            assert_eq!(won.len(), 1, "round {round}: {} owners", won.len());
            let on_disk: Holder = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
            assert_eq!(on_disk, won[0].holder);
            // (The winner need not be the runner that removed the expired lease: another may
            // create the lease in the moment after that removal.)
            assert!(names(&tmp).is_empty(), "round {round}: {:?}", names(&tmp));
        }
    }
}
