//! The Debian package and its systemd units. Builds the .deb once with
//! deploy/debian/build-deb.sh, then checks its contents, the units
//! (`systemd-analyze verify` with the packaged binary and man pages overlaid on
//! /usr in a private mount namespace, `systemd-analyze security` against the
//! score the README states) and runs the postinst in a private mount namespace
//! whose /etc and /var are overlays, so the host's users and files are never
//! touched. Needs root (mount namespaces), cargo-deb, dpkg-dev, systemd,
//! man-db, adduser and util-linux; tests/run-all.sh installs them. A missing
//! tool fails the test, it never skips.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file the package must install (directories aside).
const FILES: &[&str] = &[
    "./usr/bin/synguard",
    "./etc/synguard/synguard.toml",
    "./usr/lib/systemd/system/synguard.service",
    "./usr/lib/systemd/system/synguard@.service",
    "./usr/share/synguard/prometheus/alerts.yml",
    "./usr/share/synguard/prometheus/prometheus.yml",
    "./usr/share/synguard/grafana/synguard.json",
    "./usr/share/man/man1/synguard.1.gz",
    "./usr/share/man/man1/synguard-run.1.gz",
    "./usr/share/man/man1/synguard-check-config.1.gz",
    "./usr/share/man/man1/synguard-status.1.gz",
    "./usr/share/man/man1/synguard-keygen.1.gz",
    "./usr/share/man/man1/synguard-detach.1.gz",
    "./usr/share/bash-completion/completions/synguard",
    "./usr/share/zsh/vendor-completions/_synguard",
    "./usr/share/fish/vendor_completions.d/synguard.fish",
    "./usr/share/doc/synguard/README.md",
    "./usr/share/doc/synguard/copyright",
];

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {shown}: {e} (is the tool installed? tests/run-all.sh installs it)")
    });
    out
}

fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{shown} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "tests/package.rs needs root (private mount namespaces): run tests/run-all.sh as root"
    );
}

/// The .deb, built once per test process.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let stdout =
            ok(Command::new(repo().join("deploy/debian/build-deb.sh")).env("CARGO", cargo));
        let last = stdout
            .lines()
            .last()
            .expect("build-deb.sh prints the .deb path");
        let path = repo().join(last.trim());
        assert!(path.is_file(), "{} not built", path.display());
        path
    })
}

/// A scratch directory unique to this process and `name`, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("synguard-pkg-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The package's files unpacked under `dir/root`, its control files under
/// `dir/control`.
fn unpack(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("root");
    let control = dir.join("control");
    ok(Command::new("dpkg-deb").arg("-x").arg(deb()).arg(&root));
    ok(Command::new("dpkg-deb").arg("-e").arg(deb()).arg(&control));
    (root, control)
}

/// Run `script` with sh in a private mount namespace (changes to mounts
/// vanish with it).
fn in_mount_namespace(script: &str) -> String {
    require_root();
    ok(Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-euc", script]))
}

#[test]
fn package_contains_every_file() {
    let listing = ok(Command::new("dpkg-deb").arg("--contents").arg(deb()));
    let files: Vec<&str> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for f in FILES {
        assert!(
            files.contains(f),
            "{f} missing from the package:\n{listing}"
        );
    }
    let binary = listing
        .lines()
        .find(|l| l.ends_with("./usr/bin/synguard"))
        .unwrap();
    assert!(binary.starts_with("-rwxr-xr-x"), "{binary}");

    let dir = Scratch::new("contents");
    let (root, control) = unpack(&dir.0);
    assert_eq!(
        fs::read_to_string(control.join("conffiles"))
            .unwrap()
            .trim(),
        "/etc/synguard/synguard.toml"
    );
    let fields = fs::read_to_string(control.join("control")).unwrap();
    let depends = fields.lines().find(|l| l.starts_with("Depends:")).unwrap();
    assert!(
        depends.contains("adduser") && depends.contains("libc6"),
        "{depends}"
    );
    for script in ["postinst", "postrm"] {
        let mode = fs::metadata(control.join(script))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{script}");
    }
    // The shipped files are the repository's.
    for (packaged, source) in [
        (
            "usr/lib/systemd/system/synguard.service",
            "deploy/systemd/synguard.service",
        ),
        (
            "usr/lib/systemd/system/synguard@.service",
            "deploy/systemd/synguard@.service",
        ),
        (
            "usr/share/synguard/prometheus/alerts.yml",
            "deploy/prometheus/alerts.yml",
        ),
        (
            "usr/share/synguard/grafana/synguard.json",
            "deploy/grafana/synguard.json",
        ),
    ] {
        assert_eq!(
            fs::read(root.join(packaged)).unwrap(),
            fs::read(repo().join(source)).unwrap(),
            "{packaged}"
        );
    }
    // The man pages and completions are real, from the clap definitions.
    let man = ok(Command::new("man")
        .arg("-l")
        .arg(root.join("usr/share/man/man1/synguard-run.1.gz")));
    assert!(
        man.contains("--client-iface") && man.contains("SIGHUP"),
        "{man}"
    );
    let bash =
        fs::read_to_string(root.join("usr/share/bash-completion/completions/synguard")).unwrap();
    for sub in ["run", "check-config", "status", "keygen", "detach"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    assert!(
        !bash.contains("generate-docs"),
        "hidden subcommand completed"
    );
}

#[test]
fn packaged_config_is_the_documented_file_with_the_secret_set() {
    let dir = Scratch::new("config");
    let (root, _) = unpack(&dir.0);
    let packaged_path = root.join("etc/synguard/synguard.toml");
    let packaged = fs::read_to_string(&packaged_path).unwrap();
    let documented = fs::read_to_string(repo().join("config/synguard.toml")).unwrap();
    let differing: Vec<(&str, &str)> = documented
        .lines()
        .zip(packaged.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(documented.lines().count(), packaged.lines().count());
    assert_eq!(
        differing,
        vec![(
            "# secret_file = \"/etc/synguard/secret\"",
            "secret_file = \"/etc/synguard/secret\""
        )]
    );
    let resolved = ok(Command::new(env!("CARGO_BIN_EXE_synguard"))
        .args(["check-config", "--config"])
        .arg(&packaged_path));
    let table: toml::Table = toml::from_str(&resolved).unwrap();
    assert_eq!(
        table["cookies"]["secret_file"].as_str(),
        Some("/etc/synguard/secret")
    );
    assert_eq!(
        table["control"]["socket"].as_str(),
        Some("/run/synguard/control.sock"),
        "the unit's RuntimeDirectory=synguard holds it"
    );
}

#[test]
fn systemd_accepts_the_units() {
    let dir = Scratch::new("verify");
    let (root, _) = unpack(&dir.0);
    let units = root.join("usr/lib/systemd/system");
    // A template is verified through an instance; systemd-analyze reads the
    // unit from the file name it is given.
    fs::copy(
        units.join("synguard@.service"),
        units.join("synguard@eth0.service"),
    )
    .unwrap();
    // The packaged binary and man pages overlaid on the host's, so ExecStart=
    // and Documentation=man: resolve to what the package installs.
    let script = format!(
        "mount -t overlay overlay -o lowerdir={root}/usr/bin:/usr/bin /usr/bin
         mount -t overlay overlay -o lowerdir={root}/usr/share/man/man1:/usr/share/man/man1 /usr/share/man/man1
         test -x /usr/bin/synguard
         systemd-analyze verify {units}/synguard.service {units}/synguard@eth0.service 2>&1
         echo verified",
        root = root.display(),
        units = units.display()
    );
    let out = in_mount_namespace(&script);
    assert!(out.trim_end().ends_with("verified"), "{out}");
    assert_eq!(
        out.trim(),
        "verified",
        "systemd-analyze verify printed warnings"
    );
}

/// `systemd-analyze security --offline=true` of the unit, e.g. "1.9 OK".
fn exposure(unit: &Path) -> String {
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure level:\n{text}"));
    let score = line.rsplit(": ").next().unwrap();
    score
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn exposure_score_is_the_one_the_readme_states() {
    let single = exposure(&repo().join("deploy/systemd/synguard.service"));
    let template = exposure(&repo().join("deploy/systemd/synguard@.service"));
    assert_eq!(single, template);
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let stated = format!("exposure level {single}");
    assert!(readme.contains(&stated), "README must say `{stated}`");
}

/// The template differs from the single unit only where it must.
#[test]
fn template_has_the_same_hardening() {
    let settings = |name: &str| -> Vec<String> {
        fs::read_to_string(repo().join("deploy/systemd").join(name))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                l.replace("%i.toml", "synguard.toml")
                    .replace("synguard-%i", "synguard")
            })
            .map(|l| {
                l.replace(" --control-socket /run/synguard/control.sock", "")
                    .replace(" --flow-file /var/lib/synguard/flows.json", "")
            })
            .filter(|l| !l.starts_with("Description="))
            .collect()
    };
    assert_eq!(settings("synguard@.service"), settings("synguard.service"));
    let single = fs::read_to_string(repo().join("deploy/systemd/synguard.service")).unwrap();
    for needed in [
        "User=synguard",
        "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN CAP_BPF CAP_PERFMON",
        "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN CAP_BPF CAP_PERFMON",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "MemoryDenyWriteExecute=yes",
        "LockPersonality=yes",
        "RuntimeDirectory=synguard",
        "StateDirectory=synguard",
        "Restart=on-failure",
        "ExecStartPre=/usr/bin/synguard check-config --config /etc/synguard/synguard.toml",
        "ExecStart=/usr/bin/synguard run --config /etc/synguard/synguard.toml",
    ] {
        assert!(
            single.lines().any(|l| l == needed),
            "synguard.service lacks `{needed}`"
        );
    }
}

#[test]
fn postinst_creates_the_user_and_a_private_secret_once() {
    let dir = Scratch::new("postinst");
    let (root, control) = unpack(&dir.0);
    let d = dir.0.display();
    for sub in ["etc-upper", "etc-work", "var-upper", "var-work"] {
        fs::create_dir_all(dir.0.join(sub)).unwrap();
    }
    // dpkg has unpacked the package: its /etc and /usr/bin files are in place
    // (as overlay layers); /etc and /var writes land in scratch upper dirs.
    let script = format!(
        "mount -t overlay overlay -o lowerdir={root}/etc:/etc,upperdir={d}/etc-upper,workdir={d}/etc-work /etc
         mount -t overlay overlay -o lowerdir=/var,upperdir={d}/var-upper,workdir={d}/var-work /var
         mount -t overlay overlay -o lowerdir={root}/usr/bin:/usr/bin /usr/bin
         ! getent passwd synguard >/dev/null || {{ echo 'synguard user exists before the postinst'; exit 1; }}
         {control}/postinst configure
         stat -c '%a %U %G' /etc/synguard/secret
         getent passwd synguard
         sha256sum /etc/synguard/secret
         {control}/postinst configure 0.1.0-1
         sha256sum /etc/synguard/secret
         stat -c '%a %U %G' /etc/synguard/secret
         getent passwd synguard | wc -l
         synguard check-config --config /etc/synguard/synguard.toml >/dev/null
         echo done",
        root = root.display(),
        control = control.display(),
    );
    let out = in_mount_namespace(&script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert_eq!(lines[0], "600 synguard synguard", "{out}");
    let passwd: Vec<&str> = lines[1].split(':').collect();
    assert_eq!(passwd[0], "synguard");
    let uid: u32 = passwd[2].parse().unwrap();
    assert!(uid < 1000, "a system user: {}", lines[1]);
    assert_eq!(passwd[5], "/nonexistent");
    assert!(passwd[6].ends_with("nologin"), "{}", lines[1]);
    assert_eq!(lines[2], lines[3], "the second configure kept the secret");
    assert_eq!(lines[4], "600 synguard synguard");
    assert_eq!(lines[5], "1");
    assert_eq!(lines[6], "done");

    // What the postinst wrote went to the overlay, not to the host.
    let secret = dir.0.join("etc-upper/synguard/secret");
    let meta = fs::metadata(&secret).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), uid);
    let hex = fs::read_to_string(&secret).unwrap();
    assert_eq!(hex.trim().len(), 32, "a keygen secret: {hex:?}");
    assert!(
        !fs::read_to_string("/etc/passwd")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("synguard:")),
        "the postinst wrote to the host's /etc/passwd"
    );
    assert!(
        !Path::new("/etc/synguard/secret").exists(),
        "the postinst wrote to the host's /etc"
    );
}
