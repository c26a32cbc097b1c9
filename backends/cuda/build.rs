//! Builds the format kernels (`kernels/formats.cu` over `kernels/formats.cuh`) for the host, so
//! the tests run the CUDA kernels' bodies on the CPU and compare them with the plugins. No
//! contraction into FMA and no fast-math: the arithmetic is IEEE single and double, as on the GPU.

fn main() {
    for f in ["kernels/formats_host.c", "kernels/formats.cu", "kernels/formats.cuh"] {
        println!("cargo:rerun-if-changed={f}");
    }
    cc::Build::new()
        .file("kernels/formats_host.c")
        .opt_level(2)
        .flag("-ffp-contract=off")
        .flag("-fno-fast-math")
        .warnings(true)
        .extra_warnings(true)
        .compile("qf_formats_host");
}
