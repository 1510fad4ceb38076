//! A short mutation-fuzzing run of every parser of user bytes (npy, npz, csv, image zip, ONNX models and
//! cards, multipart uploads over loopback HTTP): no panic and no slow input. The long run is `faculty fuzz` (README).
#[test]
fn parsers_survive_mutated_inputs() {
    let models = [
        "zoo/teachers/letters_logreg.onnx",
        "zoo/teachers/letters_mlp.onnx",
    ]
    .iter()
    .map(|p| std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap())
    .collect();
    let corpus = faculty::fuzz::synthetic_corpus(models);
    let web = faculty::fuzz::multipart_target(&corpus).unwrap();
    for t in faculty::fuzz::targets(corpus).into_iter().chain([web]) {
        let n = match t.name {
            "onnx" | "card" | "multipart" => 300,
            _ => 2000,
        };
        let s = faculty::fuzz::run(&t, n, 7, std::time::Duration::from_secs(10));
        assert_eq!(s.inputs, n, "{}", t.name);
        assert!(
            s.findings.is_empty(),
            "{}: {:?}",
            t.name,
            s.findings
                .iter()
                .map(|f| (f.iteration, f.what.clone(), f.input.len()))
                .collect::<Vec<_>>()
        );
    }
}
