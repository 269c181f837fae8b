//! The graph cache on a tiny graph: what is loaded, what is refused before the backend's parser
//! and how a refusal is reported.

use super::*;
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{DType, GraphBuilder, OutType, TensorDesc};
use shadowattn_test_support::counting_npu::CountingNpu;

/// `x [1,1,2,4] · w [1,1,4,3]`, FP16, the weights STATIC.
fn tiny_graph() -> Graph {
    let mut b = GraphBuilder::new("tiny");
    let x = b
        .input("x", TensorDesc::new(DType::F16, [1, 1, 2, 4]))
        .unwrap();
    let desc = TensorDesc::new(DType::F16, [1, 1, 4, 3]);
    let w = b.constant("w", desc, vec![0; 4 * 3 * 2]).unwrap();
    let y = b
        .matmul("y", x, w, false, false, OutType::plain(DType::F16))
        .unwrap();
    b.output(y).unwrap();
    b.build().unwrap()
}

/// A fresh empty cache folder.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "shadowattn-graph-cache-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The only file in `dir`.
fn only_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn a_cached_graph_is_loaded_on_the_next_start() {
    let dir = folder("loaded");
    let npu = CountingNpu::new(CpuBackend::new());
    let graph = tiny_graph();
    let (_, origin) = compile_or_load(&npu, &graph, Some(&dir)).unwrap();
    assert!(matches!(origin, Origin::Compiled));
    let (loaded, origin) = compile_or_load(&npu, &graph, Some(&dir)).unwrap();
    assert!(matches!(origin, Origin::Loaded));
    assert_eq!(loaded.graph(), &graph);
    assert_eq!((npu.compiles(), npu.deserializes()), (1, 1));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(only_file(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_damaged_and_foreign_files_never_reach_the_parser() {
    let dir = folder("refused");
    let graph = tiny_graph();
    // A file of another backend, under this backend's name for the graph.
    let foreign_dir = folder("foreign");
    compile_or_load(
        &CountingNpu::named(CpuBackend::new(), "other"),
        &graph,
        Some(&foreign_dir),
    )
    .unwrap();
    let foreign = std::fs::read(only_file(&foreign_dir)).unwrap();
    std::fs::remove_dir_all(&foreign_dir).unwrap();
    compile_or_load(&CpuBackend::new(), &graph, Some(&dir)).unwrap();
    let path = only_file(&dir);
    let good = std::fs::read(&path).unwrap();
    let bare = CpuBackend::new()
        .compile(&graph)
        .unwrap()
        .serialize()
        .unwrap();
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 0x40;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() - 1].to_vec(), "truncated"),
        ("damaged", flipped, "digest"),
        ("foreign", foreign, "written by `other "),
        // What version 1 wrote: the backend's bytes bare, which it would parse.
        ("bare", bare, "bad magic"),
    ];
    for len in 0..good.len() {
        std::fs::write(&path, &good[..len]).unwrap();
        let npu = CountingNpu::new(CpuBackend::new());
        let (_, origin) = compile_or_load(&npu, &graph, Some(&dir)).unwrap();
        assert!(matches!(origin, Origin::Refused(_)), "{len} bytes");
        assert_eq!(npu.deserializes(), 0, "{len} bytes");
    }
    for (what, bytes, reason) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let npu = CountingNpu::new(CpuBackend::new());
        let (compiled, origin) = compile_or_load(&npu, &graph, Some(&dir)).unwrap();
        assert_eq!(npu.deserializes(), 0, "{what}: parsed");
        assert_eq!(compiled.graph(), &graph, "{what}");
        let Origin::Refused(refusal) = origin else {
            panic!("{what}: not refused");
        };
        assert_eq!(refusal.path, path, "{what}");
        let warning = refusal.to_string();
        assert!(warning.contains(&path.display().to_string()), "{warning}");
        assert!(warning.contains(reason), "{what}: {warning}");
        // Written again, whole.
        assert_eq!(std::fs::read(&path).unwrap(), good, "{what}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_compiled_from_another_graph_never_reaches_the_parser() {
    let dir = folder("other-graph");
    let npu = CountingNpu::new(CpuBackend::new());
    let graph = tiny_graph();
    compile_or_load(&npu, &graph, Some(&dir)).unwrap();
    let mut renamed = GraphBuilder::new("renamed");
    let x = renamed
        .input("x", TensorDesc::new(DType::F16, [1, 1, 2, 4]))
        .unwrap();
    renamed.output(x).unwrap();
    let renamed = renamed.build().unwrap();
    // The other graph's file under this graph's name, sealed by this backend: its subject names
    // the other graph, so it is refused unparsed.
    let other_dir = folder("other-graph-src");
    compile_or_load(&npu, &renamed, Some(&other_dir)).unwrap();
    std::fs::copy(only_file(&other_dir), only_file(&dir)).unwrap();
    std::fs::remove_dir_all(&other_dir).unwrap();
    let before = npu.deserializes();
    let (_, origin) = compile_or_load(&npu, &graph, Some(&dir)).unwrap();
    assert_eq!(npu.deserializes(), before, "parsed");
    let Origin::Refused(refusal) = origin else {
        panic!("not refused");
    };
    assert!(
        refusal.to_string().contains("compiled from other graphs"),
        "{refusal}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
