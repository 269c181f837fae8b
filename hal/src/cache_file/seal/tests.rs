use super::*;
use proptest::prelude::*;

const KIND: &Kind = b"TEST0001";

/// The label of the test files: kind `KIND`, written by `writer`, compiled from "the graph".
fn label(writer: &str) -> Label<'_> {
    Label {
        kind: KIND,
        writer,
        subject: subject_of(["the graph"]),
    }
}

fn sealed() -> Vec<u8> {
    seal(&label("cpu"), b"the payload").unwrap()
}

#[test]
fn a_sealed_payload_opens_to_itself() {
    assert_eq!(open(&sealed(), &label("cpu")).unwrap(), b"the payload");
    let empty = seal(&label(""), b"").unwrap();
    assert_eq!(empty.len(), HEADER_LEN);
    assert_eq!(open(&empty, &label("")).unwrap(), b"");
}

#[test]
fn every_truncation_is_refused() {
    let file = sealed();
    for len in 0..file.len() {
        let e = open(&file[..len], &label("cpu")).unwrap_err();
        assert!(
            matches!(e, CacheFileError::Truncated { found, .. } if found == len as u64),
            "{len}: {e:?}"
        );
    }
}

#[test]
fn every_flipped_byte_is_refused() {
    let file = sealed();
    for at in 0..file.len() {
        for bit in 0..8 {
            let mut bad = file.clone();
            bad[at] ^= 1 << bit;
            assert!(open(&bad, &label("cpu")).is_err(), "byte {at} bit {bit}");
        }
    }
}

#[test]
fn another_backend_kind_or_version_is_named() {
    let file = sealed();
    assert_eq!(
        open(&file, &label("qnn")),
        Err(CacheFileError::Backend {
            found: "cpu".into(),
            expected: "qnn".into()
        })
    );
    assert_eq!(
        open(
            &file,
            &Label {
                kind: b"TEST0002",
                ..label("cpu")
            }
        ),
        Err(CacheFileError::Kind {
            found: "TEST0001".into(),
            expected: "TEST0002".into()
        })
    );
    let mut newer = file.clone();
    newer[8] = 2;
    assert_eq!(
        open(&newer, &label("cpu")),
        Err(CacheFileError::Version { found: 2 })
    );
    assert_eq!(
        open(b"SABANK01 an old bank", &label("cpu")),
        Err(CacheFileError::BadMagic)
    );
    assert_eq!(
        open(
            &file,
            &Label {
                subject: subject_of(["another graph"]),
                ..label("cpu")
            }
        ),
        Err(CacheFileError::Subject)
    );
    let mut longer = file;
    longer.push(0);
    assert_eq!(
        open(&longer, &label("cpu")),
        Err(CacheFileError::TrailingBytes { extra: 1 })
    );
}

#[test]
fn a_payload_length_past_the_end_is_truncation_not_overflow() {
    let mut file = sealed();
    let at = 22 + "cpu".len() + 32;
    file[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        open(&file, &label("cpu")),
        Err(CacheFileError::Truncated {
            needed: u64::MAX,
            ..
        })
    ));
}

#[test]
fn a_header_altered_to_name_another_backend_fails_the_digest() {
    // The digest covers the header: a file altered to name another backend is refused even
    // when the reader is that backend.
    let mut file = sealed();
    file[22..25].copy_from_slice(b"qnn");
    assert_eq!(open(&file, &label("qnn")), Err(CacheFileError::Digest));
}

proptest! {
    // Proptest looks for its regression file through the working directory, which Miri
    // isolates; the code is safe slicing only, and the exhaustive tests above run under Miri.
    #[test]
    #[cfg_attr(miri, ignore = "proptest's regression file: Miri isolates the file system")]
    fn mutated_files_open_to_the_payload_or_are_refused(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 1..6)
    ) {
        let file = sealed();
        let mut bad = file.clone();
        for (at, byte, insert) in edits {
            let at = at % (bad.len() + 1);
            if insert || at == bad.len() {
                bad.insert(at, byte);
            } else {
                bad[at] = byte;
            }
        }
        match open(&bad, &label("cpu")) {
            Ok(payload) => {
                prop_assert_eq!(&bad, &file);
                prop_assert_eq!(payload, b"the payload");
            }
            Err(_) => prop_assert_ne!(&bad, &file),
        }
    }
}

#[test]
fn subjects_differ_by_content_and_by_how_it_is_split() {
    assert_eq!(subject_of(["ab", "c"]), subject_of(["ab", "c"]));
    assert_ne!(subject_of(["ab", "c"]), subject_of(["a", "bc"]));
    assert_ne!(subject_of(["abc"]), subject_of(["abd"]));
}
