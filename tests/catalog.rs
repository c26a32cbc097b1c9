//! End-to-end tests of the format catalog: every family ranked, compositions.

mod support;

use support::{host, num, rows_by_format, shipped_plugins};

#[test]
fn the_catalog_ranks_at_least_40_presets_across_families() {
    shipped_plugins();
    // Small tensors and a fixed sample count: this checks coverage and the
    // bit breakdowns, not precision (the oracle tests do that).
    let run = host(&["rank", "plugins/", "--json", "--shape", "16x1024", "--samples", "32768"]);
    run.expect_code(0);
    let rows = rows_by_format(&run);
    assert!(rows.len() >= 40, "only {} presets ranked", rows.len());
    for family in ["scalar", "sparse", "vector"] {
        assert!(rows.values().any(|r| r["family"] == family), "no {family} format ranked");
    }
    for (name, r) in &rows {
        let parts = r["bits_breakdown"].as_array().unwrap_or_else(|| panic!("{name}: no bits_breakdown"));
        let sum: f64 = parts.iter().map(|p| num(p, "bits")).sum();
        assert!((sum - num(r, "bits_per_element")).abs() < 1e-9, "{name}: breakdown {sum} vs total");
    }
}

#[test]
fn compositions_count_bits_and_report_the_product_rule() {
    shipped_plugins();
    let run = host(&[
        "rank",
        "plugins/",
        "--json",
        "--shape",
        "64x1024",
        "-f",
        "sparse-2of4+int4",
        "-f",
        "outliers:p=0.01+int3",
        "-f",
        "int3",
    ]);
    run.expect_code(0);
    let rows = rows_by_format(&run);
    // The parts are measured for the product rule but only the selection is ranked.
    assert_eq!(rows.len(), 3, "{:?}", rows.keys());
    let c = &rows["sparse-2of4+int4"];
    // 2:4 keeps its index (2 bits per kept value = 1 bit per element); its BF16
    // values are replaced by int4 on the dense 64x512 tensor of kept values:
    // half of (4 + 16/512) bits per element.
    let expected = 1.0 + 0.5 * (4.0 + 16.0 / 512.0);
    assert!((num(c, "bits_per_element") - expected).abs() < 1e-12, "{}", num(c, "bits_per_element"));
    let parts = c["parts"].as_array().expect("parts of a composition");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["format"], "sparse-2of4");
    let product = num(&parts[0], "rho") * num(&parts[1], "rho");
    assert!((num(c, "rho_product") - product).abs() < 1e-12);
    // Re-encoding the kept values in 4 bits adds error to 2:4 alone.
    assert!(num(c, "gmse") > num(&parts[0], "gmse"));
    // Outliers: int3 plus, per outlier (1 % of 65536 = 655), a 16-bit value
    // and a 16-bit position (65536 = 2^16 elements).
    let o = &rows["outliers:p=0.01+int3"];
    let frac = 655.0 / 65536.0;
    let expected = num(&rows["int3"], "bits_per_element") + frac * 32.0;
    assert!((num(o, "bits_per_element") - expected).abs() < 1e-9, "{}", num(o, "bits_per_element"));
    assert!(num(o, "gmse") < num(&rows["int3"], "gmse"), "keeping outliers exactly must help int3");
    assert!(o["rho_product"].is_null());
}
