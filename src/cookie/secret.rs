//! The cookie secret: a 128-bit SipHash key, its hex file format (a key
//! per line: the one that mints, and optionally one more that is accepted
//! too), and generating a fresh one from OS randomness.
//!
//! Owns the only randomness and the only file access in `cookie`; never logs
//! or prints the key (`Debug` is redacted). Instances that share a secret
//! (and wall-clock time) accept each other's cookies.

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Key length in bytes (SipHash keys are 128 bits).
const KEY_BYTES: usize = 16;
/// Hex characters in a secret file, not counting trailing whitespace.
const HEX_CHARS: usize = 2 * KEY_BYTES;
/// A secret file is tiny; reading stops here so a wrong path such as
/// `/dev/zero` fails fast instead of filling memory.
const MAX_FILE_BYTES: u64 = 4096;
/// Only the owner may read or write the key.
const FILE_MODE: u32 = 0o600;

/// The 128-bit SipHash key cookies are minted with.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieSecret([u8; KEY_BYTES]);

/// What a secret file names: the key that mints cookies, and one more that
/// is accepted too (the first step of rolling a new key across a fleet: every
/// instance accepts it before any mints with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieKeys {
    pub minting: CookieSecret,
    pub also_accepted: Option<CookieSecret>,
}

impl CookieKeys {
    /// One key, minting; nothing else accepted.
    pub fn single(minting: CookieSecret) -> Self {
        Self {
            minting,
            also_accepted: None,
        }
    }

    /// Read a secret file: one key per line, 32 hex characters (either
    /// case) each, optionally followed by whitespace such as a newline. The
    /// first key mints; a second one is accepted too (see
    /// [`super::minter::CookieMinter::set_keys`]); more is an error.
    pub fn load(path: &Path) -> Result<CookieKeys, SecretError> {
        let read_error = |source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut contents = Vec::with_capacity(2 * (HEX_CHARS + 1));
        File::open(path)
            .and_then(|file| file.take(MAX_FILE_BYTES).read_to_end(&mut contents))
            .map_err(read_error)?;
        let text = contents.trim_ascii_end();
        let mut keys = Vec::with_capacity(2);
        let mut offset = 0;
        for line in text.split(|&c| c == b'\n') {
            keys.push(CookieSecret::parse_line(
                path,
                line.trim_ascii_end(),
                offset,
            )?);
            offset += line.len() + 1;
        }
        let mut keys = keys.into_iter();
        match (keys.next(), keys.next(), keys.len()) {
            (Some(minting), also_accepted, 0) => Ok(CookieKeys {
                minting,
                also_accepted,
            }),
            (_, _, more) => Err(SecretError::TooManyKeys {
                path: path.to_path_buf(),
                found: 2 + more,
            }),
        }
    }
}

impl From<CookieSecret> for CookieKeys {
    fn from(minting: CookieSecret) -> Self {
        Self::single(minting)
    }
}

/// Why a secret could not be loaded, generated or written. Every message
/// names the file, except `Random`, which has none.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cookie secret {}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "cookie secret {}: expected {HEX_CHARS} hex characters (plus optional trailing \
         whitespace), found {found}",
        path.display()
    )]
    BadLength { path: PathBuf, found: usize },
    #[error(
        "cookie secret {}: invalid hex character at offset {offset}",
        path.display()
    )]
    BadHex { path: PathBuf, offset: usize },
    #[error(
        "cookie secret {}: {found} keys; a secret file holds one (the key that mints) or two \
         (the second is accepted too, while a new key is rolled out)",
        path.display()
    )]
    TooManyKeys { path: PathBuf, found: usize },
    #[error("cookie secret {}: file exists, refusing to overwrite it", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("cookie secret {}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cookie secret: cannot get OS randomness (getrandom): {0}")]
    Random(io::Error),
}

impl CookieSecret {
    pub fn from_bytes(b: [u8; KEY_BYTES]) -> Self {
        Self(b)
    }

    /// A fresh secret from the kernel's CSPRNG (`getrandom(2)`, blocking
    /// only until the pool is initialised at boot).
    pub fn generate() -> Result<Self, SecretError> {
        let mut key = [0u8; KEY_BYTES];
        let mut filled = 0;
        while filled < key.len() {
            let rest = &mut key[filled..];
            // SAFETY: `rest` is a live, writable buffer of exactly
            // `rest.len()` bytes for the whole call, and getrandom writes at
            // most `buflen` bytes into it.
            let got = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            match got {
                n if n > 0 => filled += n as usize,
                0 => {
                    return Err(SecretError::Random(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "getrandom returned no bytes",
                    )))
                }
                _ => {
                    let err = io::Error::last_os_error();
                    // A signal before any byte was written: just retry.
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(SecretError::Random(err));
                    }
                }
            }
        }
        Ok(Self(key))
    }

    /// One line of a secret file, starting at byte `offset` of it.
    fn parse_line(path: &Path, hex: &[u8], offset: usize) -> Result<Self, SecretError> {
        if hex.len() != HEX_CHARS {
            return Err(SecretError::BadLength {
                path: path.to_path_buf(),
                found: hex.len(),
            });
        }
        let mut key = [0u8; KEY_BYTES];
        for (i, byte) in key.iter_mut().enumerate() {
            let digit = |at: usize| {
                hex_value(hex[at]).ok_or_else(|| SecretError::BadHex {
                    path: path.to_path_buf(),
                    offset: offset + at,
                })
            };
            *byte = digit(2 * i)? << 4 | digit(2 * i + 1)?;
        }
        Ok(Self(key))
    }

    /// Generate a secret and write it as hex plus a newline to a new file
    /// with mode 0600. An existing file is an error unless `overwrite`; an
    /// overwritten file is set to 0600 before the key is written into it.
    pub fn write_new(path: &Path, overwrite: bool) -> Result<Self, SecretError> {
        let write_error = |source| SecretError::Write {
            path: path.to_path_buf(),
            source,
        };
        let secret = Self::generate()?;
        let mut options = OpenOptions::new();
        options.write(true).mode(FILE_MODE);
        if overwrite {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                SecretError::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                write_error(source)
            }
        })?;
        // `mode` only applies when the file is created; an overwritten file
        // keeps its old mode unless we tighten it here.
        file.set_permissions(Permissions::from_mode(FILE_MODE))
            .map_err(write_error)?;
        let mut line = secret.to_hex();
        line.push('\n');
        file.write_all(line.as_bytes()).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        Ok(secret)
    }

    /// Lowercase hex, the file format without the newline.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(HEX_CHARS);
        for byte in self.0 {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        hex
    }

    /// The raw key, for the MAC only.
    pub(crate) fn key(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

impl fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieSecret(<redacted>)")
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop (also
    /// when a test fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "synguard-cookie-secret-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let dir = std::env::temp_dir().join(name);
            std::fs::create_dir(&dir).unwrap();
            Self(dir)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_then_load_round_trips_with_mode_0600() {
        let dir = TempDir::new();
        let path = dir.file("secret");
        let written = CookieSecret::write_new(&path, false).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", written.to_hex()));
        assert_eq!(
            CookieKeys::load(&path).unwrap(),
            CookieKeys::single(written)
        );
    }

    #[test]
    fn write_refuses_to_overwrite_unless_asked() {
        let dir = TempDir::new();
        let path = dir.file("secret");
        std::fs::write(&path, "keep me\n").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();

        let err = CookieSecret::write_new(&path, false).unwrap_err();
        assert!(matches!(err, SecretError::AlreadyExists { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me\n");

        let written = CookieSecret::write_new(&path, true).unwrap();
        assert_eq!(mode_of(&path), 0o600, "overwrite tightens the mode");
        assert_eq!(
            CookieKeys::load(&path).unwrap(),
            CookieKeys::single(written)
        );
    }

    #[test]
    fn load_accepts_either_case_and_trailing_whitespace() {
        let dir = TempDir::new();
        let path = dir.file("secret");
        let bytes = [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        for text in [
            "00112233445566778899aabbccddeeff",
            "00112233445566778899AABBCCDDEEFF\n",
            "00112233445566778899aAbBcCdDeEfF \r\n\t\n",
        ] {
            std::fs::write(&path, text).unwrap();
            let keys = CookieKeys::load(&path).unwrap();
            assert_eq!(
                keys,
                CookieKeys::single(CookieSecret::from_bytes(bytes)),
                "{text:?}"
            );
            assert_eq!(keys.minting.to_hex(), "00112233445566778899aabbccddeeff");
        }
    }

    #[test]
    fn load_errors_name_the_path() {
        let dir = TempDir::new();
        let path = dir.file("secret");
        let shown = path.display().to_string();

        let err = CookieKeys::load(&path).unwrap_err();
        assert!(matches!(err, SecretError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains(&shown), "{err}");

        for (text, found) in [("", 0), ("0011", 4), (&"ab".repeat(17) as &str, 34)] {
            std::fs::write(&path, text).unwrap();
            let err = CookieKeys::load(&path).unwrap_err();
            assert!(
                matches!(err, SecretError::BadLength { found: f, .. } if f == found),
                "{text:?}: {err:?}"
            );
            assert!(err.to_string().contains(&shown), "{err}");
        }

        // Leading whitespace is not trimmed: it is a bad hex character.
        for (text, offset) in [
            ("0011223344556677889900112233445g\n", 31),
            ("x0112233445566778899001122334455", 0),
            (" 0112233445566778899001122334455", 0),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = CookieKeys::load(&path).unwrap_err();
            assert!(
                matches!(err, SecretError::BadHex { offset: o, .. } if o == offset),
                "{text:?}: {err:?}"
            );
            assert!(err.to_string().contains(&shown), "{err}");
        }
    }

    #[test]
    fn a_second_line_is_a_key_accepted_too_and_a_third_is_refused() {
        let dir = TempDir::new();
        let path = dir.file("secret");
        let (a, b) = ("11".repeat(16), "2f".repeat(16));
        std::fs::write(&path, format!("{a}\r\n{b}  \n\n")).unwrap();
        assert_eq!(
            CookieKeys::load(&path).unwrap(),
            CookieKeys {
                minting: CookieSecret::from_bytes([0x11; 16]),
                also_accepted: Some(CookieSecret::from_bytes([0x2f; 16])),
            }
        );
        // Offsets count from the start of the file.
        std::fs::write(&path, format!("{a}\n{}g\n", &b[..31])).unwrap();
        let err = CookieKeys::load(&path).unwrap_err();
        assert!(
            matches!(err, SecretError::BadHex { offset: 64, .. }),
            "{err:?}"
        );
        std::fs::write(&path, format!("{a}\n{b}\n{a}\n")).unwrap();
        let err = CookieKeys::load(&path).unwrap_err();
        assert!(
            matches!(err, SecretError::TooManyKeys { found: 3, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn generate_gives_distinct_keys() {
        let a = CookieSecret::generate().unwrap();
        let b = CookieSecret::generate().unwrap();
        // 2^-128 chance of a false failure.
        assert_ne!(a, b);
    }

    #[test]
    fn debug_does_not_reveal_the_key() {
        let secret = CookieSecret::from_bytes([0xab; 16]);
        let shown = format!("{secret:?} {:?}", Some(secret.clone()));
        assert!(!shown.to_lowercase().contains("ab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
