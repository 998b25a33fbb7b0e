//! Wrap/unwrap tests. Keys and interop blobs come from `tests/data` (made by
//! `tests/data/make-fixtures.sh` with GnuPG 2.2 and Debian's skopeo 1.9.3).

use std::path::Path;
use std::process::{Command, Stdio};

use ocicrypt_keywrap::KeyFile;
use ocicrypt_keywrap::secrecy::SecretString;
use ocicrypt_spec::options::PrivateOptions;
use openpgp::cert::CertBuilder;
use openpgp::packet::Tag;
use openpgp::serialize::Serialize;
use openpgp::types::SymmetricAlgorithm;

use super::*;

const OPTS: &[u8] =
    br#"{"symkey":"c2VjcmV0","digest":"sha256:00","cipheroptions":{"nonce":"bm9uY2U="}}"#;
const W: PgpKeyWrapper = PgpKeyWrapper;

macro_rules! data {
    ($name:literal) => {
        include_bytes!(concat!("../tests/data/", $name)).as_slice()
    };
}

const ALICE_PUB: &[u8] = data!("alice.pub.gpg");
const ALICE_PUB_ASC: &[u8] = data!("alice.pub.asc");
const ALICE_SEC: &[u8] = data!("alice.sec.gpg");
const ALICE_SEC_ASC: &[u8] = data!("alice.sec.asc");
const BOB_PUB: &[u8] = data!("bob.pub.gpg");
const BOB_PUB_ASC: &[u8] = data!("bob.pub.asc");
const BOB_SEC: &[u8] = data!("bob.sec.gpg");
const BOB_SEC_ASC: &[u8] = data!("bob.sec.asc");
const CAROL_PUB: &[u8] = data!("carol.pub.gpg");
const CAROL_SEC: &[u8] = data!("carol.sec.gpg");
const CAROL_SEC_ASC: &[u8] = data!("carol.sec.asc");
const DAVE_PUB: &[u8] = data!("dave.pub.gpg");
const DAVE_SEC: &[u8] = data!("dave.sec.gpg");
const ERIN_PUB: &[u8] = data!("erin.pub.gpg");
const ERIN_SEC: &[u8] = data!("erin.sec.gpg");
const CAROL_PASS: &str = "carol-pass";

fn keyring(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn key(data: &[u8]) -> KeyFile {
    KeyFile::new(data.to_vec())
}

fn key_pw(data: &[u8], pw: &str) -> KeyFile {
    KeyFile::with_password(data.to_vec(), SecretString::from(pw))
}

fn ec(ring: &[u8], recipients: &[&str]) -> EncryptConfig {
    EncryptConfig::default()
        .with_gpg_recipients(recipients.iter().map(|r| (*r).to_owned()).collect())
        .with_gpg_public_keyring(Some(ring.to_vec()))
}

fn wrap_for(ring: &[u8], recipients: &[&str]) -> Vec<u8> {
    W.wrap_keys(&ec(ring, recipients), OPTS).unwrap().unwrap()
}

fn unwrap_with(keys: Vec<KeyFile>, blob: &[u8]) -> Result<SecretBytes, Error> {
    let dc = DecryptConfig::default().with_gpg_private_keys(keys);
    W.unwrap_key(&dc, blob)
}

fn causes(err: Error) -> Vec<String> {
    match err {
        Error::NoMatchingKey { causes, .. } => causes.iter().map(ToString::to_string).collect(),
        other => panic!("expected NoMatchingKey, got {other:?}"),
    }
}

fn subkey_id(file: &str) -> u64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file);
    u64::from_str_radix(std::fs::read_to_string(path).unwrap().trim(), 16).unwrap()
}

fn all_pub() -> Vec<u8> {
    keyring(&[ALICE_PUB, BOB_PUB, CAROL_PUB, DAVE_PUB])
}

#[test]
fn round_trip_rsa_and_cv25519() {
    for (who, sec, sec_asc) in [
        ("alice@example.com", ALICE_SEC, ALICE_SEC_ASC),
        ("bob@example.com", BOB_SEC, BOB_SEC_ASC),
    ] {
        let blob = wrap_for(&all_pub(), &[who]);
        assert_eq!(unwrap_with(vec![key(sec)], &blob).unwrap().expose(), OPTS);
        assert_eq!(
            unwrap_with(vec![key(sec_asc)], &blob).unwrap().expose(),
            OPTS
        );
    }
}

#[test]
fn two_recipients_each_decrypt_alone() {
    let blob = wrap_for(&all_pub(), &["alice@example.com", "Bob Example"]);
    assert_eq!(
        W.key_ids(&blob).unwrap(),
        [subkey_id("alice.subkeyid"), subkey_id("bob.subkeyid")]
    );
    for sec in [ALICE_SEC, BOB_SEC] {
        assert_eq!(unwrap_with(vec![key(sec)], &blob).unwrap().expose(), OPTS);
    }
    // Keys that do not fit are skipped.
    let opts = unwrap_with(vec![key(DAVE_SEC), key(BOB_SEC)], &blob).unwrap();
    assert_eq!(opts.expose(), OPTS);
}

#[test]
fn armored_and_binary_keyrings() {
    let rings = [
        keyring(&[ALICE_PUB_ASC]),
        keyring(&[BOB_PUB_ASC, b"\n", ALICE_PUB_ASC]),
        keyring(&[BOB_PUB, ALICE_PUB]),
        // A secret keyring works as a public keyring too.
        keyring(&[ALICE_SEC]),
    ];
    for ring in rings {
        let blob = wrap_for(&ring, &["alice@example.com"]);
        assert_eq!(W.key_ids(&blob).unwrap(), [subkey_id("alice.subkeyid")]);
        assert_eq!(
            unwrap_with(vec![key(ALICE_SEC)], &blob).unwrap().expose(),
            OPTS
        );
    }
}

#[test]
fn recipients_by_name_email_fingerprint_and_key_id() {
    let fpr = cert_fingerprints(BOB_PUB).unwrap();
    assert_eq!(fpr.len(), 1);
    assert_eq!(fpr[0].len(), 40);
    assert_eq!(fpr[0], fpr[0].to_uppercase());
    let bob_id = subkey_id("bob.subkeyid");
    let recipients = [
        "Bob Example".to_owned(),
        "bob@example.com".to_owned(),
        fpr[0].clone(),
        format!("0x{}", fpr[0].to_lowercase()),
        format!("{:016X}", bob_id),
        format!("0x{:016x}", bob_id),
        // The primary key's key id (the fingerprint's last 16 digits).
        fpr[0][24..].to_owned(),
    ];
    for r in recipients {
        let blob = wrap_for(&all_pub(), &[&r]);
        assert_eq!(W.key_ids(&blob).unwrap(), [bob_id], "{r}");
        assert_eq!(
            unwrap_with(vec![key(BOB_SEC)], &blob).unwrap().expose(),
            OPTS
        );
    }
    // Names and addresses match exactly, as in Go: no partial or case-folded matches.
    for r in [
        "Bob",
        "BOB@example.com",
        "Bob Example <bob@example.com>",
        "bob",
    ] {
        let err = W.wrap_keys(&ec(&all_pub(), &[r]), OPTS).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("no key found for the following recipients: {r}")),
            "{err}"
        );
    }
}

#[test]
fn same_cert_named_twice_gets_one_packet() {
    let blob = wrap_for(&all_pub(), &["alice@example.com", "Alice Example"]);
    assert_eq!(W.key_ids(&blob).unwrap(), [subkey_id("alice.subkeyid")]);
}

#[test]
fn unknown_recipients_are_all_named() {
    let err = W
        .wrap_keys(
            &ec(
                &all_pub(),
                &["nobody@example.com", "alice@example.com", "Zed"],
            ),
            OPTS,
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRecipient { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "pgp: invalid recipient key: no key found for the following recipients: \
         nobody@example.com, Zed"
    );
    // No keyring at all: every recipient is unknown.
    let no_ring = EncryptConfig::default().with_gpg_recipients(vec!["alice@example.com".into()]);
    let err = W.wrap_keys(&no_ring, OPTS).unwrap_err();
    assert!(
        err.to_string().ends_with("recipients: alice@example.com"),
        "{err}"
    );
}

#[test]
fn no_recipients_no_blob() {
    let ec = ec(&all_pub(), &[]);
    assert!(!W.has_recipients(&ec));
    assert!(W.wrap_keys(&ec, OPTS).unwrap().is_none());
    assert!(W.has_recipients(&self::ec(&[], &["x"])));
    assert!(!W.has_possible_keys(&DecryptConfig::default()));
    let dc = DecryptConfig::default().with_gpg_private_keys(vec![key(ALICE_SEC)]);
    assert!(W.has_possible_keys(&dc));
    assert_eq!(W.scheme(), "pgp");
    assert_eq!(W.annotation_key(), "org.opencontainers.image.enc.keys.pgp");
}

#[test]
fn garbage_keyring_is_an_error() {
    let err = W
        .wrap_keys(&ec(b"not a keyring", &["alice@example.com"]), OPTS)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRecipient { .. }), "{err:?}");
}

#[test]
fn cert_without_encryption_key_is_an_error() {
    let (cert, _) = CertBuilder::new()
        .add_userid("Sig Only <sig@example.com>")
        .add_signing_subkey()
        .generate()
        .unwrap();
    let mut ring = Vec::new();
    cert.serialize(&mut ring).unwrap();
    let err = W
        .wrap_keys(&ec(&ring, &["sig@example.com"]), OPTS)
        .unwrap_err();
    assert!(
        err.to_string().contains("has no valid encryption key"),
        "{err}"
    );
}

#[test]
fn passphrase_protected_keys() {
    let blob = wrap_for(&all_pub(), &["carol@example.com"]);
    for sec in [CAROL_SEC, CAROL_SEC_ASC] {
        let err = unwrap_with(vec![key(sec)], &blob).unwrap_err();
        assert!(matches!(err, Error::MissingPassword { .. }), "{err:?}");
        assert!(err.is_password_error());
        let err = unwrap_with(vec![key_pw(sec, "wrong")], &blob).unwrap_err();
        assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");
        let opts = unwrap_with(vec![key_pw(sec, CAROL_PASS)], &blob).unwrap();
        assert_eq!(opts.expose(), OPTS);
        // A password problem stops the search, even when a later key file would open the
        // blob (the KeyWrapper contract, as in jwe and pkcs7); a key file that opens it,
        // given first, wins.
        let blob2 = wrap_for(&all_pub(), &["carol@example.com", "bob@example.com"]);
        let err = unwrap_with(vec![key(sec), key(BOB_SEC)], &blob2).unwrap_err();
        assert!(matches!(err, Error::MissingPassword { .. }), "{err:?}");
        let err = unwrap_with(vec![key_pw(sec, "wrong"), key(BOB_SEC)], &blob2).unwrap_err();
        assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");
        let opts = unwrap_with(vec![key(BOB_SEC), key(sec)], &blob2).unwrap();
        assert_eq!(opts.expose(), OPTS);
    }
    // A protected key that the blob does not name is no password problem.
    let alice_blob = wrap_for(&all_pub(), &["alice@example.com"]);
    let err = unwrap_with(vec![key(CAROL_SEC)], &alice_blob).unwrap_err();
    assert_eq!(causes(err).len(), 1);
    // A passphrase given for an unprotected key is ignored.
    let opts = unwrap_with(vec![key_pw(ALICE_SEC, "unused")], &alice_blob).unwrap();
    assert_eq!(opts.expose(), OPTS);
}

/// What [`dissect`] finds: the (depth, tag) of every packet, the SEIPD versions, the cipher,
/// and the literal data.
type Dissected = (Vec<(isize, Tag)>, Vec<u8>, SymmetricAlgorithm, Vec<u8>);

/// Walks our message, decrypting it with `sec`.
fn dissect(blob: &[u8], sec: &[u8]) -> Dissected {
    use openpgp::parse::PacketParserResult;
    let cert = openpgp::Cert::from_bytes(sec).unwrap();
    let mut pairs: Vec<_> = cert
        .keys()
        .secret()
        .map(|k| k.key().clone().into_keypair().unwrap())
        .collect();
    let mut ppr = PacketParser::from_bytes(blob).unwrap();
    let (mut tags, mut seipd_versions, mut pkesks) = (Vec::new(), Vec::new(), Vec::new());
    let mut cipher = None;
    let mut literal = None;
    while let PacketParserResult::Some(mut pp) = ppr {
        match &pp.packet {
            Packet::PKESK(p) => {
                assert_eq!(p.version(), 3);
                pkesks.push(p.clone());
            }
            Packet::SEIP(s) => {
                seipd_versions.push(s.version());
                let (algo, sk) = pkesks
                    .iter()
                    .find_map(|p| pairs.iter_mut().find_map(|kp| p.decrypt(kp, None)))
                    .unwrap();
                cipher = algo;
                pp.decrypt(algo, &sk).unwrap();
            }
            Packet::Literal(_) => {
                pp.buffer_unread_content().unwrap();
            }
            _ => {}
        }
        if let Packet::Literal(l) = &pp.packet {
            literal = Some(l.body().to_vec());
        }
        tags.push((pp.recursion_depth(), pp.packet.tag()));
        ppr = pp.recurse().unwrap().1;
    }
    (tags, seipd_versions, cipher.unwrap(), literal.unwrap())
}

#[test]
fn packet_shape_is_what_go_writes() {
    let blob = wrap_for(&all_pub(), &["alice@example.com", "bob@example.com"]);
    let (tags, versions, cipher, literal) = dissect(&blob, BOB_SEC);
    assert_eq!(
        tags,
        [
            (0, Tag::PKESK),
            (0, Tag::PKESK),
            (0, Tag::SEIP),
            (1, Tag::Literal),
            (1, Tag::MDC)
        ]
    );
    assert_eq!(versions, [1]);
    assert_eq!(cipher, SymmetricAlgorithm::AES256);
    assert_eq!(literal, OPTS);
    // Binary, not armored: the first byte is a packet tag.
    assert_eq!(blob.first().map(|b| b & 0x80), Some(0x80));
}

/// A key of sequoia's defaults, which advertise SEIPD v2: the cert and its secret keys,
/// serialized.
fn modern_cert() -> (openpgp::Cert, Vec<u8>) {
    let (cert, _) = CertBuilder::general_purpose(Some("Modern <modern@example.com>"))
        .generate()
        .unwrap();
    let mut tsk = Vec::new();
    cert.as_tsk().serialize(&mut tsk).unwrap();
    (cert, tsk)
}

#[test]
fn seipd_v1_even_for_keys_that_advertise_v2() {
    let (cert, ring) = modern_cert();
    use openpgp::cert::Preferences;
    let policy = keys::policy();
    let features = cert.with_policy(&policy, None).unwrap().features().unwrap();
    assert!(
        features.supports_seipdv2(),
        "the test needs a v2-capable cert"
    );
    let blob = wrap_for(&ring, &["modern@example.com"]);
    let (tags, versions, _, literal) = dissect(&blob, &ring);
    assert_eq!(versions, [1]);
    assert!(!tags.iter().any(|(_, t)| *t == Tag::CompressedData));
    assert_eq!(literal, OPTS);
    assert_eq!(unwrap_with(vec![key(&ring)], &blob).unwrap().expose(), OPTS);
}

#[test]
fn aes128_when_a_recipient_does_not_prefer_aes256() {
    // Erin's preferences (made by GnuPG) are AES-192, AES-128.
    let ring = keyring(&[ERIN_PUB, ALICE_PUB]);
    let blob = wrap_for(&ring, &["erin@example.com", "alice@example.com"]);
    let (_, _, cipher, literal) = dissect(&blob, ERIN_SEC);
    assert_eq!(cipher, SymmetricAlgorithm::AES128);
    assert_eq!(literal, OPTS);
    let (_, _, cipher, _) = dissect(&wrap_for(&ring, &["alice@example.com"]), ALICE_SEC);
    assert_eq!(cipher, SymmetricAlgorithm::AES256);
}

/// A temporary GnuPG home; its agent is stopped on drop.
struct GnupgHome(tempfile::TempDir);

impl GnupgHome {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self(dir)
    }

    fn gpg(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        use std::io::Write as _;
        let mut child = Command::new("gpg")
            .arg("--homedir")
            .arg(self.0.path())
            .args(["--batch", "--no-tty"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test needs GnuPG's `gpg` binary (apt-get install gnupg): {e}")
            });
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn import(&self, key: &[u8]) {
        let out = self.gpg(&["--import"], Some(key));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.0.path())
            .args(["--kill", "all"])
            .output();
    }
}

#[test]
fn gnupg_decrypts_what_we_wrap() {
    for (who, sec) in [
        ("alice@example.com", ALICE_SEC),
        ("bob@example.com", BOB_SEC),
    ] {
        let home = GnupgHome::new();
        home.import(sec);
        let blob = wrap_for(&all_pub(), &[who]);
        let out = home.gpg(&["--decrypt"], Some(&blob));
        assert!(
            out.status.success(),
            "gpg --decrypt failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, OPTS, "{who}");
    }
}

#[test]
fn gnupg_export_gives_a_usable_keyring() {
    let home = GnupgHome::new();
    home.import(ALICE_PUB);
    home.import(BOB_PUB_ASC);
    let ring = gnupg::export_public_keyring(Some(home.0.path())).unwrap();
    let mut fprs = cert_fingerprints(&ring).unwrap();
    fprs.sort();
    let mut expected = [
        cert_fingerprints(ALICE_PUB).unwrap(),
        cert_fingerprints(BOB_PUB).unwrap(),
    ]
    .concat();
    expected.sort();
    assert_eq!(fprs, expected);
    let blob = wrap_for(&ring, &["alice@example.com", "bob@example.com"]);
    assert_eq!(
        unwrap_with(vec![key(BOB_SEC)], &blob).unwrap().expose(),
        OPTS
    );
}

#[test]
fn missing_gpg_binary_is_a_clear_error() {
    let err = gnupg::export_with(&["no-such-gpg-binary-for-ocicrypt-tests"], None).unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains("is GnuPG installed?"), "{err}");
}

#[test]
fn failing_gpg_is_an_error() {
    // A home directory that is a file makes gpg fail.
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = gnupg::export_public_keyring(Some(file.path())).unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
}

fn check_private_options(json: &[u8]) {
    let opts = PrivateOptions::from_json(json).unwrap();
    assert!(!opts.symkey.expose().is_empty());
}

#[test]
fn skopeo_blobs() {
    /// A blob, the secret keys that each open it, the files with its recipients' key ids.
    type Case<'a> = (&'a [u8], &'a [&'a [u8]], &'a [&'a str]);
    let cases: [Case; 6] = [
        (
            data!("skopeo-alice-1.bin"),
            &[ALICE_SEC],
            &["alice.subkeyid"],
        ),
        (
            data!("skopeo-alice-2.bin"),
            &[ALICE_SEC_ASC],
            &["alice.subkeyid"],
        ),
        (data!("skopeo-dave-1.bin"), &[DAVE_SEC], &["dave.subkeyid"]),
        (data!("skopeo-dave-2.bin"), &[DAVE_SEC], &["dave.subkeyid"]),
        (
            data!("skopeo-alice-dave-1.bin"),
            &[ALICE_SEC, DAVE_SEC],
            &["alice.subkeyid", "dave.subkeyid"],
        ),
        (
            data!("skopeo-alice-dave-2.bin"),
            &[ALICE_SEC, DAVE_SEC],
            &["alice.subkeyid", "dave.subkeyid"],
        ),
    ];
    for (blob, secs, ids) in cases {
        let ids: Vec<u64> = ids.iter().map(|f| subkey_id(f)).collect();
        assert_eq!(W.key_ids(blob).unwrap(), ids);
        let recipients: Vec<String> = ids.iter().map(|id| format!("0x{id:x}")).collect();
        assert_eq!(W.recipients(blob).unwrap(), recipients);
        for sec in secs {
            check_private_options(unwrap_with(vec![key(sec)], blob).unwrap().expose());
        }
        let err = unwrap_with(vec![key(BOB_SEC)], blob).unwrap_err();
        assert_eq!(causes(err).len(), 1);
    }
}

#[test]
fn recipients_format_matches_go() {
    // Go: "0x" + strconv.FormatUint(keyid, 16): lowercase, no leading zeros.
    let blob = wrap_for(&all_pub(), &["bob@example.com"]);
    let id = subkey_id("bob.subkeyid");
    assert_eq!(W.recipients(&blob).unwrap(), [format!("0x{id:x}")]);
}

#[test]
fn go_framing_needs_the_compat_path() {
    use openpgp::parse::stream::DecryptorBuilder;
    // sequoia alone rejects what Go writes: non-canonical MPIs in the PKESK (when the RSA
    // ciphertext's top bit is clear; about half the time)...
    let all = [
        data!("skopeo-alice-1.bin"),
        data!("skopeo-alice-2.bin"),
        data!("skopeo-alice-dave-1.bin"),
        data!("skopeo-alice-dave-2.bin"),
        data!("skopeo-dave-1.bin"),
        data!("skopeo-dave-2.bin"),
    ];
    let blob = all
        .into_iter()
        .find(|b| openpgp::PacketPile::from_bytes(b).is_err())
        .expect("a skopeo blob with a non-canonical MPI");
    let (_, rest) = blob.split_at(3);
    let (_, mpi) = rest.split_at(10);
    assert_eq!(u16::from_be_bytes([mpi[0], mpi[1]]) % 8, 0);
    // (canonical PKESKs, as GnuPG and sequoia write them, are left as they are)...
    assert!(compat::normalize(data!("gpg-bob.bin")).is_none());
    assert!(compat::normalize(&wrap_for(&all_pub(), &["alice@example.com"])).is_none());
    // ...and short partial body chunks: the SEIPD header...
    let fixed = compat::normalize(blob).unwrap();
    let pile = openpgp::PacketPile::from_bytes(&fixed).unwrap();
    assert!(pile.children().any(|p| p.tag() == Tag::SEIP));
    // ...and the literal data packet inside, which the streaming decryptor refuses.
    struct H(Vec<openpgp::Cert>);
    impl openpgp::parse::stream::VerificationHelper for H {
        fn get_certs(&mut self, _: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<openpgp::Cert>> {
            Ok(Vec::new())
        }
        fn check(&mut self, _: openpgp::parse::stream::MessageStructure) -> openpgp::Result<()> {
            Ok(())
        }
    }
    impl openpgp::parse::stream::DecryptionHelper for H {
        fn decrypt(
            &mut self,
            pkesks: &[PKESK],
            _: &[openpgp::packet::SKESK],
            sym: Option<SymmetricAlgorithm>,
            decrypt: &mut dyn FnMut(
                Option<SymmetricAlgorithm>,
                &openpgp::crypto::SessionKey,
            ) -> bool,
        ) -> openpgp::Result<Option<openpgp::Cert>> {
            for k in self.0.iter().flat_map(|c| c.keys().secret()) {
                let mut kp = k.key().clone().into_keypair()?;
                for p in pkesks {
                    if let Some((a, sk)) = p.decrypt(&mut kp, sym)
                        && decrypt(a, &sk)
                    {
                        return Ok(None);
                    }
                }
            }
            Err(anyhow_free_error())
        }
    }
    fn anyhow_free_error() -> openpgp::anyhow::Error {
        openpgp::Error::MissingSessionKey("test".into()).into()
    }
    let policy = keys::policy();
    let certs = keys::parse_certs(&keyring(&[ALICE_SEC, DAVE_SEC])).unwrap();
    let r = DecryptorBuilder::from_bytes(&fixed)
        .unwrap()
        .with_policy(&policy, None, H(certs));
    assert!(
        r.is_err(),
        "sequoia now reads Go's literal packets: compat may go"
    );
    // With the compat path, it decrypts.
    let keys = vec![key(ALICE_SEC), key(DAVE_SEC)];
    check_private_options(unwrap_with(keys, blob).unwrap().expose());
}

#[test]
fn tampered_go_blob_is_malformed() {
    let blob = data!("skopeo-alice-dave-1.bin");
    for back in [1, 10, 22, 30, 60] {
        let mut b = blob.to_vec();
        let i = b.len() - back;
        b[i] ^= 0x01;
        let err = unwrap_with(vec![key(ALICE_SEC)], &b).unwrap_err();
        assert!(
            matches!(err, Error::MalformedBlob { .. }),
            "{back}: {err:?}"
        );
    }
}

#[test]
fn gnupg_blobs() {
    let msg = data!("gpg-msg.json");
    for (blob, sec) in [
        (data!("gpg-bob.bin"), BOB_SEC),
        (data!("gpg-alice-zlib.bin"), ALICE_SEC),
    ] {
        assert_eq!(unwrap_with(vec![key(sec)], blob).unwrap().expose(), msg);
    }
}

#[test]
fn compressed_and_seipd_v2_messages_are_read() {
    use openpgp::types::CompressionAlgorithm;
    let (cert, tsk) = modern_cert();
    let blob = compressed_message(&cert, CompressionAlgorithm::Zlib, |w| {
        w.write_all(OPTS).unwrap();
    });
    let pile = openpgp::PacketPile::from_bytes(&blob).unwrap();
    assert!(
        pile.children()
            .any(|p| matches!(p, Packet::SEIP(s) if s.version() == 2))
    );
    assert_eq!(unwrap_with(vec![key(&tsk)], &blob).unwrap().expose(), OPTS);
}

#[test]
fn garbage_and_truncated_blobs_are_malformed() {
    let blob = wrap_for(&all_pub(), &["bob@example.com"]);
    let mut bad: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"garbage, not OpenPGP".to_vec(),
        vec![0xff; 64],
        // A PKESK alone, with no encrypted data.
        blob[..blob.len() / 3].to_vec(),
    ];
    for cut in [1, 16, 40] {
        bad.push(blob[..blob.len() - cut].to_vec());
    }
    for b in &bad {
        let err = unwrap_with(vec![key(BOB_SEC)], b).unwrap_err();
        assert!(
            matches!(err, Error::MalformedBlob { .. }),
            "{}: {err:?}",
            b.len()
        );
    }
    for b in &bad[..3] {
        assert!(matches!(
            W.key_ids(b).unwrap_err(),
            Error::MalformedBlob { .. }
        ));
    }
}

#[test]
fn tampered_blob_is_malformed() {
    let blob = wrap_for(&all_pub(), &["bob@example.com"]);
    let mut b = blob.clone();
    let last = b.len() - 5;
    b[last] ^= 1;
    let err = unwrap_with(vec![key(BOB_SEC)], &b).unwrap_err();
    assert!(matches!(err, Error::MalformedBlob { .. }), "{err:?}");
}

#[test]
fn wrong_key_and_public_key_are_no_matching_key() {
    let blob = wrap_for(&all_pub(), &["alice@example.com"]);
    let c = causes(unwrap_with(vec![key(BOB_SEC)], &blob).unwrap_err());
    assert_eq!(c.len(), 1);
    assert!(c[0].contains("no secret key for any recipient"), "{c:?}");
    let c = causes(unwrap_with(vec![key(ALICE_PUB)], &blob).unwrap_err());
    assert!(c[0].contains("no secret key material"), "{c:?}");
    let c = causes(unwrap_with(vec![key(b"not a key")], &blob).unwrap_err());
    assert!(c[0].contains("not an OpenPGP secret key"), "{c:?}");
    let c = causes(unwrap_with(Vec::new(), &blob).unwrap_err());
    assert_eq!(c, ["no OpenPGP key was given"]);
    let err = unwrap_with(vec![key(DAVE_SEC), key(BOB_SEC)], &blob).unwrap_err();
    let c = causes(err);
    assert_eq!(c.len(), 2);
    assert!(
        c[0].starts_with("OpenPGP key 1: ") && c[1].starts_with("OpenPGP key 2: "),
        "{c:?}"
    );
}

#[test]
fn key_file_classification() {
    for sec in [ALICE_SEC, ALICE_SEC_ASC, BOB_SEC, CAROL_SEC_ASC] {
        assert!(is_secret_key(sec));
        assert!(!is_public_key(sec));
    }
    for public in [ALICE_PUB, ALICE_PUB_ASC, BOB_PUB_ASC, DAVE_PUB] {
        assert!(is_public_key(public));
        assert!(!is_secret_key(public));
    }
    for other in [
        b"".as_slice(),
        b"-----BEGIN PRIVATE KEY-----\n",
        &[0x99; 10],
    ] {
        assert!(!is_public_key(other) && !is_secret_key(other));
    }
    let two = keyring(&[ALICE_PUB, BOB_PUB]);
    assert_eq!(cert_fingerprints(&two).unwrap().len(), 2);
    assert_eq!(
        cert_fingerprints(ALICE_PUB_ASC).unwrap(),
        cert_fingerprints(ALICE_SEC).unwrap()
    );
    for bad in [b"".as_slice(), b"nonsense"] {
        assert!(matches!(
            cert_fingerprints(bad).unwrap_err(),
            Error::InvalidRecipient { .. }
        ));
    }
}

#[test]
fn wildcard_recipient_is_tried_with_every_key() {
    use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Recipient};
    use std::io::Write as _;
    let cert = openpgp::Cert::from_bytes(BOB_PUB).unwrap();
    let policy = keys::policy();
    let recipients: Vec<Recipient> = cert
        .keys()
        .with_policy(&policy, None)
        .for_transport_encryption()
        .map(|ka| Recipient::new(None, None, ka.key()))
        .collect();
    let mut blob = Vec::new();
    let m = Encryptor::for_recipients(Message::new(&mut blob), recipients)
        .build()
        .unwrap();
    let mut w = LiteralWriter::new(m).build().unwrap();
    w.write_all(OPTS).unwrap();
    w.finalize().unwrap();
    assert_eq!(W.key_ids(&blob).unwrap(), [0]);
    assert_eq!(W.recipients(&blob).unwrap(), ["0x0"]);
    let opts = unwrap_with(vec![key(ALICE_SEC), key(BOB_SEC)], &blob).unwrap();
    assert_eq!(opts.expose(), OPTS);
}

// ---------------------------------------------------------------- limits (issue 11)

fn assert_limit(err: Error, what: &str, limit: usize) {
    match &err {
        Error::LimitExceeded {
            scheme,
            what: w,
            limit: l,
        } => assert_eq!((scheme.as_str(), *w, *l), ("pgp", what, limit)),
        other => panic!("{other:?}"),
    }
}

/// A message to bob's encryption key whose literal data is `len` zero bytes, compressed.
fn compressed_zeros_for_bob(len: usize) -> Vec<u8> {
    use openpgp::types::CompressionAlgorithm;
    let cert = openpgp::Cert::from_bytes(BOB_PUB).unwrap();
    compressed_message(&cert, CompressionAlgorithm::Zip, |w| {
        let chunk = vec![0u8; 1 << 16];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
    })
}

/// A message to `cert`'s encryption keys, compressed with `algo`, whose literal data is what
/// `literal` writes.
fn compressed_message(
    cert: &openpgp::Cert,
    algo: openpgp::types::CompressionAlgorithm,
    literal: impl FnOnce(&mut dyn Write),
) -> Vec<u8> {
    use openpgp::serialize::stream::{Compressor, Encryptor, LiteralWriter, Message};
    let policy = keys::policy();
    let recipients = cert
        .keys()
        .with_policy(&policy, None)
        .for_transport_encryption();
    let mut blob = Vec::new();
    let m = Encryptor::for_recipients(Message::new(&mut blob), recipients)
        .build()
        .unwrap();
    let m = Compressor::new(m).algo(algo).build().unwrap();
    let mut w = LiteralWriter::new(m).build().unwrap();
    literal(&mut w);
    w.finalize().unwrap();
    blob
}

#[test]
fn decompression_bomb_is_refused() {
    assert_eq!(MAX_PLAINTEXT_LEN, 64 * 1024);
    // At the limit: read.
    let at_cap = compressed_zeros_for_bob(MAX_PLAINTEXT_LEN);
    let opts = unwrap_with(vec![key(BOB_SEC)], &at_cap).unwrap();
    assert_eq!(opts.expose().len(), MAX_PLAINTEXT_LEN);
    // One byte more, and 10 MiB made with nothing but the public key (a few KB): refused,
    // and no other key file is tried.
    for len in [MAX_PLAINTEXT_LEN + 1, 10 << 20] {
        let bomb = compressed_zeros_for_bob(len);
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        let err = unwrap_with(vec![key(BOB_SEC), key(ALICE_SEC)], &bomb).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pgp: wrapped key exceeds a limit: more than 65536 bytes of decrypted data"
        );
        assert_limit(err, "bytes of decrypted data", MAX_PLAINTEXT_LEN);
    }
}

/// The PKESK packet of a fresh message to `recipient`, serialized: it names the
/// recipient's key but holds another session key than any other message.
fn foreign_pkesk(recipient: &str) -> Vec<u8> {
    let other = wrap_for(&all_pub(), &[recipient]);
    let pile = openpgp::PacketPile::from_bytes(&other).unwrap();
    let first = pile.children().next().unwrap();
    assert_eq!(first.tag(), Tag::PKESK);
    let mut bytes = Vec::new();
    first.serialize(&mut bytes).unwrap();
    bytes
}

/// `n` copies of `junk` in front of a message to `recipient` (whose one PKESK comes last).
fn with_junk_pkesks(recipient: &str, junk: &[u8], n: usize) -> Vec<u8> {
    let mut blob = junk.repeat(n);
    blob.extend_from_slice(&wrap_for(&all_pub(), &[recipient]));
    blob
}

#[test]
fn pkesks_are_capped() {
    assert_eq!(MAX_PKESKS, 1024);
    let junk = foreign_pkesk("bob@example.com");
    // At the limit: every PKESK is tried, the last one opens it.
    let at_cap = with_junk_pkesks("bob@example.com", &junk, MAX_PKESKS - 1);
    assert_eq!(W.key_ids(&at_cap).unwrap().len(), MAX_PKESKS);
    assert_eq!(
        unwrap_with(vec![key(BOB_SEC)], &at_cap).unwrap().expose(),
        OPTS
    );
    // One more: refused by unwrap, key_ids and recipients alike, before any key is used.
    let over = with_junk_pkesks("bob@example.com", &junk, MAX_PKESKS);
    let started = std::time::Instant::now();
    for err in [
        unwrap_with(vec![key(BOB_SEC)], &over).unwrap_err(),
        W.key_ids(&over).unwrap_err(),
        W.recipients(&over).unwrap_err(),
    ] {
        assert_limit(err, "PKESK packets", MAX_PKESKS);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// Issue 14: a layer's blobs share the unlocked keys: a protected key is unlocked once
/// for all of them, not once per blob, and a wrong passphrase still stops at once.
#[test]
fn a_protected_key_is_unlocked_once_for_all_blobs() {
    use crate::decrypt::UNLOCKS;
    let unlocks = || UNLOCKS.with(std::cell::Cell::take);
    // Three blobs for carol and bob, then one for carol alone: carol's file comes second.
    let blobs: Vec<Vec<u8>> = (0..3)
        .map(|_| wrap_for(&all_pub(), &["carol@example.com", "bob@example.com"]))
        .chain([wrap_for(&all_pub(), &["carol@example.com"])])
        .collect();
    let keys = || vec![key(DAVE_SEC), key_pw(CAROL_SEC, CAROL_PASS)];
    let dc = DecryptConfig::default().with_gpg_private_keys(keys());
    unlocks();
    // With bob's key first, nothing is unlocked; then carol's key opens the last blob.
    let with_bob = DecryptConfig::default()
        .with_gpg_private_keys(vec![key(BOB_SEC), key_pw(CAROL_SEC, CAROL_PASS)]);
    assert_eq!(W.unwrap_first(&with_bob, &blobs).unwrap().expose(), OPTS);
    assert_eq!(unlocks(), 0);
    // Blob by blob through the shared search: one derivation for the four blobs.
    let mut search = decrypt::key_search(&dc.gpg_private_keys);
    for blob in &blobs {
        let opts = decrypt::unwrap(&mut search, blob).unwrap();
        assert_eq!(opts.expose(), OPTS);
    }
    assert_eq!(unlocks(), 1);
    assert_eq!(search.reads(), 2);
    // unwrap_key pays per blob; unwrap_first once for the layer.
    for blob in &blobs[..2] {
        W.unwrap_key(&dc, blob).unwrap();
    }
    assert_eq!(unlocks(), 2);
    let only_carol = [blobs[3].clone(), blobs[3].clone()];
    let junk_first = [b"junk".to_vec(), blobs[3].clone()];
    for set in [&only_carol[..], &junk_first[..]] {
        assert_eq!(W.unwrap_first(&dc, set).unwrap().expose(), OPTS);
        assert_eq!(unlocks(), 1);
    }
    // A wrong passphrase: tried once, and the search stops at the first blob.
    let wrong = DecryptConfig::default()
        .with_gpg_private_keys(vec![key(DAVE_SEC), key_pw(CAROL_SEC, "wrong")]);
    let errors = W.unwrap_first(&wrong, &blobs).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(errors[0], Error::WrongPassword { .. }),
        "{errors:?}"
    );
    assert_eq!(unlocks(), 1);
}

/// One layer cannot make us try more than MAX_UNWRAP_ATTEMPTS PKESK decryptions, however
/// its PKESKs are spread over blobs; the limit stops the search at once.
#[test]
fn a_layer_cannot_ask_for_a_million_pkesk_decryptions() {
    // Blobs with 200 PKESKs naming carol's key (with other session keys) and one for alice:
    // 200 decryptions each, so the 21st goes over the limit (4200 > 4096).
    let junk = foreign_pkesk("carol@example.com");
    let wrong = [
        junk.repeat(200),
        wrap_for(&all_pub(), &["alice@example.com"]),
    ]
    .concat();
    let dc = DecryptConfig::default().with_gpg_private_keys(vec![key_pw(CAROL_SEC, CAROL_PASS)]);
    let mut blobs = vec![wrong; 21];
    // Carol's own blob: its right PKESK comes after 200 junk ones.
    blobs.push(with_junk_pkesks("carol@example.com", &junk, 200));
    let errors = W.unwrap_first(&dc, &blobs).unwrap_err();
    let kinds: Vec<bool> = errors
        .iter()
        .map(|e| {
            matches!(
                e,
                Error::LimitExceeded {
                    limit: MAX_UNWRAP_ATTEMPTS,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(kinds.len(), 21, "the 21st blob goes over the limit");
    assert!(kinds[20] && !kinds[19]);
    // Under it (19 wrong blobs, 3800, then 201 for carol's), carol's blob opens.
    assert_eq!(W.unwrap_first(&dc, &blobs[2..]).unwrap().expose(), OPTS);
}

#[test]
fn a_protected_key_is_unlocked_once_however_many_pkesks_name_it() {
    use crate::decrypt::UNLOCKS;
    let unlocks = || UNLOCKS.with(std::cell::Cell::take);
    // 200 PKESKs for carol's key with other session keys, then the right one: 21 s when
    // the passphrase was derived for each.
    let junk = foreign_pkesk("carol@example.com");
    let blob = with_junk_pkesks("carol@example.com", &junk, 200);
    assert_eq!(W.key_ids(&blob).unwrap().len(), 201);
    unlocks();
    let started = std::time::Instant::now();
    let opts = unwrap_with(vec![key_pw(CAROL_SEC, CAROL_PASS)], &blob).unwrap();
    assert_eq!(opts.expose(), OPTS);
    assert_eq!(unlocks(), 1);
    // One derivation takes about a second in a debug build, 201 took minutes.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // A wrong passphrase is also tried once, and a missing one never.
    let err = unwrap_with(vec![key_pw(CAROL_SEC, "wrong")], &blob).unwrap_err();
    assert!(matches!(err, Error::WrongPassword { .. }), "{err:?}");
    assert_eq!(unlocks(), 1);
    let err = unwrap_with(vec![key(CAROL_SEC)], &blob).unwrap_err();
    assert!(matches!(err, Error::MissingPassword { .. }), "{err:?}");
    assert_eq!(unlocks(), 0);
    // Only junk: every PKESK fails, still with one derivation.
    let only_junk = [
        junk.repeat(200),
        wrap_for(&all_pub(), &["alice@example.com"]),
    ]
    .concat();
    let err = unwrap_with(vec![key_pw(CAROL_SEC, CAROL_PASS)], &only_junk).unwrap_err();
    assert!(matches!(err, Error::NoMatchingKey { .. }));
    assert_eq!(unlocks(), 1);
    // One note for the 200 alike, not 200 notes.
    let message = err.to_string();
    assert!(message.len() < 500, "{} bytes", message.len());
    assert!(
        message.ends_with("does not decrypt the message (200 times)"),
        "{message}"
    );
}
