//! A SoftHSM2 token for the tests (Debian package `softhsm2`): a fresh token directory and
//! configuration in a temporary directory, one token with the keys the tests name, made once
//! per test process. Shared with the builder's command-line tests (`#[path]`).
//!
//! `SOFTHSM2_CONF` is set for this process before the module is first loaded; child processes
//! (`flipside-build`) get it through [`Token::env`].
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

/// Where Debian installs the module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TOKEN: &str = "flipside-test";
pub const USER_PIN: &str = "4321";
const SO_PIN: &str = "87654321";

/// DER OIDs of the curves, as `CKA_EC_PARAMS` holds them.
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// The keys the token holds, by label.
pub const KEYS: [(&str, Kind); 6] = [
    ("root-ed25519", Kind::Ed25519),
    ("targets-rsa", Kind::Rsa),
    ("snapshot-p256", Kind::P256),
    ("timestamp-p256", Kind::P256),
    ("spare-p256", Kind::P256),
    ("spare-rsa", Kind::Rsa),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    P256,
    Rsa,
    Ed25519,
}

/// The test token: its configuration and the PIN file.
pub struct Token {
    _dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub pin_file: PathBuf,
}

impl Token {
    /// The URI of key `label`, its PIN read from the PIN file.
    pub fn uri(&self, label: &str) -> String {
        format!(
            "pkcs11:token={TOKEN};object={label}?module-path={MODULE}&pin-source={}",
            self.pin_file.display()
        )
    }

    /// What a child process needs to find the token.
    pub fn env(&self) -> (&'static str, &Path) {
        ("SOFTHSM2_CONF", &self.conf)
    }
}

/// Holds the token for one test: PKCS#11 logs a whole application in to a token at once, so
/// a test that checks a wrong PIN must not run while another holds a logged-in session.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The token of this test process, made on first use.
pub fn token() -> &'static Token {
    static TOKEN_ONCE: OnceLock<Token> = OnceLock::new();
    TOKEN_ONCE.get_or_init(make_token)
}

fn make_token() -> Token {
    assert!(
        Path::new(MODULE).exists(),
        "this test needs SoftHSM2 ({MODULE}): install the Debian package softhsm2 (apt-get install softhsm2; scripts/setup.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, format!("{USER_PIN}\n")).unwrap();
    // Before the module is loaded in this process; nothing else here reads the variable.
    std::env::set_var("SOFTHSM2_CONF", &conf);

    let ctx = flipside_repository::signer::pkcs11::module(Path::new(MODULE)).unwrap();
    let slot = ctx.get_slots_with_token().unwrap()[0];
    ctx.init_token(slot, &AuthPin::from(SO_PIN.to_string()), TOKEN)
        .unwrap();
    // SoftHSM moves an initialised token to a new slot: find it by label.
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == TOKEN)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    session
        .login(UserType::So, Some(&AuthPin::from(SO_PIN.to_string())))
        .unwrap();
    session
        .init_pin(&AuthPin::from(USER_PIN.to_string()))
        .unwrap();
    session.logout().unwrap();
    session
        .login(UserType::User, Some(&AuthPin::from(USER_PIN.to_string())))
        .unwrap();
    for (i, (label, kind)) in KEYS.into_iter().enumerate() {
        let common = |private: bool| {
            let mut attrs = vec![
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(vec![i as u8 + 1]),
            ];
            if private {
                attrs.extend([
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Sign(true),
                ]);
            } else {
                attrs.push(Attribute::Verify(true));
            }
            attrs
        };
        let (mechanism, mut public) = match kind {
            Kind::P256 => (Mechanism::EccKeyPairGen, common(false)),
            Kind::Ed25519 => (Mechanism::EccEdwardsKeyPairGen, common(false)),
            Kind::Rsa => (Mechanism::RsaPkcsKeyPairGen, common(false)),
        };
        match kind {
            Kind::P256 => public.push(Attribute::EcParams(P256.to_vec())),
            Kind::Ed25519 => public.push(Attribute::EcParams(ED25519.to_vec())),
            Kind::Rsa => public.extend([
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
            ]),
        }
        session
            .generate_key_pair(&mechanism, &public, &common(true))
            .unwrap_or_else(|e| panic!("SoftHSM2 cannot make the {kind:?} key {label}: {e}"));
    }
    Token {
        _dir: dir,
        conf,
        pin_file,
    }
}
