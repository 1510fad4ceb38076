//! What the CLI prints: the zoo table, the ranking table and verdict, a student's card summary, and the
//! one-line progress bar on stderr (local runs and server jobs alike).
use faculty::{onnx, zoo};

/// The zoo as a table, one teacher per line.
pub fn print_table(teachers: &[zoo::Teacher]) {
    println!(
        "{:<24} {:<8} {:>9} {:>8} {:<14} {:<16} LABELS",
        "ID", "USABLE", "PARAMS", "KB", "INPUT", "OUTPUT"
    );
    for t in teachers {
        let input = t
            .inputs
            .first()
            .map(|i| format!("{:?}", i.shape))
            .unwrap_or_default();
        let output = t
            .predictor
            .as_ref()
            .map(|p| match p.kind {
                onnx::OutputKind::Probabilities => p.output.clone(),
                k => format!("{} ({k:?})", p.output).to_lowercase(),
            })
            .unwrap_or_default();
        let mut labels = t
            .labels
            .iter()
            .take(6)
            .cloned()
            .collect::<Vec<_>>()
            .join(",");
        if t.labels.len() > 6 {
            labels.push_str(&format!(",… ({})", t.labels.len()));
        }
        if t.label_source == "index" && !t.labels.is_empty() {
            labels.push_str(" [indices]");
        }
        println!(
            "{:<24} {:<8} {:>9} {:>8} {:<14} {:<16} {}",
            t.id,
            if t.usable { "yes" } else { "NO" },
            t.params,
            t.bytes / 1024,
            input,
            output,
            if t.usable {
                labels
            } else {
                t.reason.clone().unwrap_or_default()
            }
        );
    }
}

/// A one-line progress bar on stderr.
pub struct Bar {
    pub last: std::time::Instant,
}

impl Bar {
    pub fn draw(&self, progress: f64, text: &str) {
        let width = 30;
        let done = ((progress.clamp(0.0, 1.0)) * width as f64).round() as usize;
        eprint!(
            "\r[{}{}] {:>3.0}% {:<60}",
            "#".repeat(done),
            ".".repeat(width - done),
            progress * 100.0,
            text
        );
    }
}

impl faculty::distill::Progress for Bar {
    fn phase(&mut self, phase: &str, progress: f64) {
        self.draw(progress, phase);
        if phase == "done" {
            eprintln!();
        }
    }
    fn epoch(&mut self, phase: &str, m: &faculty::distill::EpochMetrics, progress: f64) {
        if self.last.elapsed().as_millis() < 100 {
            return;
        }
        self.last = std::time::Instant::now();
        let val = m
            .val_accuracy
            .map_or(String::new(), |a| format!(" val acc {a:.3}"));
        self.draw(
            progress,
            &format!("{phase} epoch {} loss {:.4}{val}", m.epoch, m.train_loss),
        );
    }
    fn teacher(&mut self, t: &faculty::distill::TeacherRef) {
        eprintln!("\rteacher: {} ({}){:60}", t.id, t.selected_by, "");
    }
    fn trial(&mut self, t: &faculty::distill::HopTrial) {
        let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.1}%", 100.0 * v));
        if t.method == faculty::distill::Method::MultiTeacher {
            eprintln!(
                "\r{} ({} params): student validation {}{:40}",
                t.model,
                t.parameters,
                pct(t.val_accuracy),
                ""
            );
            return;
        }
        eprintln!(
            "\rhop {}: {} ({} params) via {}: own {}, student {}{:30}",
            t.hop,
            t.model,
            t.parameters,
            faculty::distill::multihop::method_label(t.method, t.weighting),
            pct(t.val_accuracy),
            pct(t.student_val_accuracy),
            ""
        );
    }
}

/// What `distill` prints about the student it wrote to `out` (card at `card_path`).
pub fn print_card(
    c: &faculty::distill::StudentCard,
    out: &std::path::Path,
    card_path: &std::path::Path,
    json: bool,
) -> faculty::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(c)?);
    } else {
        let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.1}%", 100.0 * v));
        println!(
            "student {} -> {} ({} parameters, {} bytes)",
            c.id,
            out.display(),
            c.parameters,
            c.file_size
        );
        println!(
            "validation accuracy ({} rows): student {}, scratch {}, teacher {}",
            c.accuracy.validation_rows,
            pct(c.accuracy.student),
            pct(c.accuracy.scratch),
            pct(c.accuracy.teacher)
        );
        if let Some(s) = &c.selection {
            let each: Vec<String> = s
                .candidates
                .iter()
                .map(|k| format!("{} {}", k.name, pct(k.accuracy)))
                .collect();
            println!(
                "chosen by {} ({} held-out rows): {}; delivered {}{}",
                s.estimator,
                s.rows,
                each.join(", "),
                s.picked,
                if s.restarts > 1 {
                    format!(" (the lowest-loss of {} seeded trainings)", s.restarts)
                } else {
                    String::new()
                }
            );
            if let Some(f) = s.fallback.as_ref().filter(|f| f.no_teacher_helps) {
                println!(
                    "the ranking's verdict: no teacher helps; the distilled student's gain over scratch \
                     {:+.1} ± {:.1} points, {:.1} needed ({} standard errors)",
                    100.0 * f.gain,
                    100.0 * f.gain_se,
                    100.0 * f.required_gain,
                    f.margin_se
                );
            }
        }
        if let Some(t) = &c.test {
            let ci = |e: &faculty::distill::Estimate| {
                format!(
                    "{} [{:.1}, {:.1}]",
                    pct(Some(e.accuracy)),
                    100.0 * e.low,
                    100.0 * e.high
                )
            };
            println!(
                "test accuracy ({} rows, 95% interval): student {}{}{}",
                t.rows,
                ci(&t.student),
                t.scratch
                    .as_ref()
                    .map_or(String::new(), |e| format!(", scratch {}", ci(e))),
                t.teacher
                    .as_ref()
                    .map_or(String::new(), |e| format!(", teacher {}", ci(e)))
            );
        }
        if let Some(f) = &c.fusion {
            println!(
                "fusion {} of {} teachers (ensemble validation {}):",
                f.rule.as_str(),
                f.teachers.len(),
                pct(f.ensemble_accuracy)
            );
            for t in &f.teachers {
                println!(
                    "  {} weight {:.3}, validation {} (by {})",
                    t.id,
                    t.weight,
                    pct(t.accuracy),
                    t.enters_by.as_str()
                );
            }
            for t in f.trials.iter().filter(|_| f.trials.len() > 1) {
                println!(
                    "  rule {}: student {}, ensemble {}{}",
                    t.rule.as_str(),
                    pct(t.val_accuracy),
                    pct(t.ensemble_accuracy),
                    if t.chosen { " (chosen)" } else { "" }
                );
            }
        } else if let Some(w) = &c.weight_fusion {
            println!(
                "weight fusion of {} teachers ({}; aligned to {}); ensemble validation {}, \
                 test {}:",
                w.teachers.len(),
                w.architecture,
                w.reference,
                pct(w.ensemble_accuracy),
                pct(w.ensemble_test_accuracy)
            );
            for t in &w.teachers {
                println!("  teacher {}: validation {}", t.id, pct(t.accuracy));
            }
            for f in &w.candidates {
                println!(
                    "  {}: validation {}, test {}{}",
                    f.name,
                    pct(f.val_accuracy),
                    pct(f.test_accuracy),
                    if f.chosen { " (chosen)" } else { "" }
                );
            }
        } else if let Some(t) = c.teacher_chain.first() {
            match c.delivered {
                faculty::distill::Delivered::Distilled => {
                    println!("teacher: {} ({})", t.id, t.selected_by)
                }
                faculty::distill::Delivered::Scratch => println!(
                    "teacher: none, the scratch student was delivered (compared with one taught by \
                     {}, {})",
                    t.id, t.selected_by
                ),
            }
        }
        println!(
            "latency: {:.3} ms per row (ONNX Runtime, 1 thread); card: {}",
            c.latency_ms,
            card_path.display()
        );
        if let Some(m) = c.multihop.as_ref().filter(|m| m.options.max_hops == 0) {
            // a 1-hop search (method auto, weighting auto): which of its trials was delivered
            println!(
                "1-hop search: {} chosen of {} trials, validation {}",
                faculty::distill::multihop::method_label(m.one_hop_method, m.one_hop_weighting),
                m.trials.len(),
                pct(m.one_hop_accuracy)
            );
        } else if let Some(m) = &c.multihop {
            let chain: Vec<String> = m
                .chain
                .iter()
                .map(|h| format!("{} ({} params)", h.model, h.parameters))
                .collect();
            println!(
                "chain: teacher -> {}student: validation {} (best 1-hop {}); intermediates \
                 written next to the student as .hopK.onnx",
                chain.iter().map(|c| format!("{c} -> ")).collect::<String>(),
                pct(m.chain_accuracy),
                pct(m.one_hop_accuracy)
            );
            if !m.stopped.is_empty() {
                println!("search stopped: {}", m.stopped);
            }
        }
        for n in &c.notes {
            println!("note: {n}");
        }
    }
    Ok(())
}

/// A ranking as a table, with the verdict.
pub fn print_ranking(r: &faculty::rank::Ranking) {
    let rows = match &r.sampled_from {
        None => format!("{} rows ({} labeled)", r.rows, r.labeled_rows),
        Some(all) => {
            let pool = match r.rows - r.labeled_rows {
                0 => String::new(),
                k => format!(" and {k} unlabeled"),
            };
            format!(
                "{} rows ({} labeled); ranked on a stratified sample of {} labeled{pool} rows",
                all.rows, all.labeled_rows, r.labeled_rows
            )
        }
    };
    println!(
        "dataset: {rows}; primary metric: {} ({} is better)",
        r.primary_metric,
        match r.directions.get(&r.primary_metric) {
            Some(faculty::rank::Direction::Lower) => "lower",
            _ => "higher",
        }
    );
    let cols: Vec<&String> = r.directions.keys().collect();
    print!("{:>4}  {:<24}", "RANK", "TEACHER");
    for c in &cols {
        print!(" {:>15}", c);
    }
    println!("  EXPECTED STUDENT ACCURACY");
    for t in &r.results {
        let rank = match t.rank {
            None => "-".to_string(),
            Some(v) if t.tied_with_top => format!("{v}="),
            Some(v) => v.to_string(),
        };
        print!("{:>4}  {:<24}", rank, t.teacher_id);
        if !t.compatible {
            println!(" incompatible: {}", t.reason.as_deref().unwrap_or(""));
            continue;
        }
        for c in &cols {
            match t.scores.get(*c) {
                Some(v) => print!(" {:>15.4}", v),
                None => print!(" {:>15}", "n/a"),
            }
        }
        match &t.expected_accuracy {
            Some(e) => println!(
                "  {:.0}% [{:.0}, {:.0}]",
                100.0 * e.estimate,
                100.0 * e.low,
                100.0 * e.high
            ),
            None => println!(),
        }
    }
    println!(
        "  (expected: the default student's test accuracy from this teacher, 80% interval; off by 7 points \
         on average on tasks it was not fitted on)"
    );
    if let Some(e) = r.verdict.expected_scratch_accuracy {
        println!(
            "  (the same student trained on the labeled rows alone: {:.0}% [{:.0}, {:.0}] expected)",
            100.0 * e.estimate,
            100.0 * e.low,
            100.0 * e.high
        );
    }
    if r.results.iter().any(|t| t.tied_with_top) {
        println!(
            "  (= within noise of rank 1: under 2 standard errors behind on the labeled rows)"
        );
    }
    let noted: Vec<_> = r
        .results
        .iter()
        .filter(|t| t.compatible && !t.notes.is_empty())
        .collect();
    if !noted.is_empty() {
        println!("notes:");
        for t in noted {
            println!("  {}: {}", t.teacher_id, t.notes.join("; "));
        }
    }
    println!(
        "verdict: {}{}{}",
        if r.verdict.teacher_helps {
            "a teacher helps"
        } else {
            "no teacher is likely to help"
        },
        r.verdict
            .expected_gain
            .map(|g| format!(" (expected gain over scratch {:+.1} points)", 100.0 * g))
            .unwrap_or_default(),
        if r.verdict.confident {
            ""
        } else {
            " (a lean: within noise)"
        }
    );
    println!("  {}", r.verdict.reason);
}
