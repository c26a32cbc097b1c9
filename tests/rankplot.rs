//! `host rank --plot` end to end: the SVG chart of the ranked formats.

mod support;

use support::{arg, host, shipped_plugins, target_dir};

/// The text contents of the `<text>` elements of an SVG document.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let inner = t.split_once('>').expect("<text> tag closed").1;
            inner.split("</text>").next().expect("</text>").trim().to_string()
        })
        .collect()
}

#[test]
fn rank_plot_writes_a_labelled_chart() {
    shipped_plugins();
    let dir = target_dir().join("tmp-rankplot");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("rank.svg");
    let _ = std::fs::remove_file(&out);
    let formats = ["int4", "e2m1", "nvfp4", "sparse50"];
    let mut args = vec!["rank", "plugins/", "--samples", "1048576", "--plot", arg(&out)];
    for f in formats {
        args.extend(["-f", f]);
    }
    let run = host(&args);
    run.expect_code(0);
    assert!(run.stderr.contains(&format!("host: wrote {}", out.display())), "{}", run.stderr);
    // The ranking is still printed.
    for f in formats {
        assert!(run.stdout.contains(f), "{f} missing in the table:\n{}", run.stdout);
    }

    let svg = std::fs::read_to_string(&out).expect("the plot was written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    // Balanced <text> elements (the only ones with content).
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    let t = texts(&svg);
    let once = |want: &str| t.iter().filter(|x| *x == want).count() == 1;
    for want in ["bits per element", "Gaussian MSE (GMSE)", "Pareto front", "Lloyd-Max", "Shannon bound"] {
        assert!(once(want), "{want:?} not exactly once in {t:?}");
    }
    // Families: int4, e2m1 and nvfp4 are scalar, sparse50 sparse.
    assert!(once("scalar") && once("sparse"), "{t:?}");
    // Every format labels its point, once.
    for f in formats {
        assert!(once(f), "label {f:?} not exactly once in {t:?}");
    }
    assert!(t.iter().any(|x| x.starts_with("GMSE vs bits per element, 4 formats")), "{t:?}");

    // A folder that does not exist: a one-line error naming the file, nothing else written.
    let bad = dir.join("no-such-folder").join("x.svg");
    let run = host(&["rank", "plugins/", "-f", "int4", "--samples", "65536", "--plot", arg(&bad)]);
    run.expect_code(1);
    assert!(run.stderr.contains("cannot write") && run.stderr.contains("x.svg"), "{}", run.stderr);
}
