//! The format kernels on the CPU: `kernels/formats.cu` compiled for the host by build.rs (each
//! kernel a C function running its body for every thread index in order), driven by the same
//! [`Plan`] as the GPU. What the bit-for-bit tests run where there is no GPU.

use std::ffi::{c_int, c_long, c_uint};

use super::{Arg, Buf, Launch, MASK, OUTPUT, Plan};

unsafe extern "C" {
    fn qf_sumsq_partial(
        n: c_long,
        x: *const f32,
        cols: c_long,
        glen: c_long,
        gpr: c_long,
        bpg: c_long,
        partial: *mut f64,
    );
    fn qf_group_scale(
        n: c_long,
        x: *const f32,
        cols: c_long,
        glen: c_long,
        gpr: c_long,
        bpg: c_long,
        partial: *const f64,
        rule: c_int,
        k: f32,
        scale: *mut f32,
    );
    fn qf_int_apply(
        n: c_long,
        x: *const f32,
        y: *mut f32,
        mask: *mut f32,
        cols: c_long,
        glen: c_long,
        gpr: c_long,
        scale: *const f32,
        rule: c_int,
        param: f32,
    );
    fn qf_fp_apply(
        n: c_long,
        x: *const f32,
        y: *mut f32,
        mask: *mut f32,
        cols: c_long,
        glen: c_long,
        gpr: c_long,
        scale: *const f32,
        max: f32,
        min_normal: f32,
        m: c_uint,
        clip: f32,
    );
    fn qf_raw_apply(
        n: c_long,
        x: *const f32,
        y: *mut f32,
        mask: *mut f32,
        e8m0: c_int,
        saturate: c_int,
        max: f32,
        limit: f32,
        ovf: f32,
        nan_bits: c_uint,
        min_normal: f32,
        m: c_uint,
    );
    fn qf_mx_exponent(
        n: c_long,
        x: *const f32,
        cols: c_long,
        glen: c_long,
        gpr: c_long,
        rule: c_int,
        int8: c_int,
        max: f32,
        min_normal: f32,
        emin: c_int,
        emax: c_int,
        m: c_uint,
        max_frac: c_uint,
        exps: *mut i32,
    );
    fn qf_mx_apply(
        n: c_long,
        x: *const f32,
        y: *mut f32,
        mask: *mut f32,
        cols: c_long,
        glen: c_long,
        gpr: c_long,
        exps: *const i32,
        int8: c_int,
        max: f32,
        min_normal: f32,
        emin: c_int,
        emax: c_int,
        m: c_uint,
        clip: f32,
    );
    fn qf_absmax_partial(n: c_long, x: *const f32, total: c_long, partial: *mut f32);
    fn qf_nvfp4_tensor(n: c_long, partial: *const f32, chunks: c_long, s: *mut f32, to_code: *mut f64);
    fn qf_nvfp4_scale(
        n: c_long,
        x: *const f32,
        cols: c_long,
        glen: c_long,
        gpr: c_long,
        s: *const f32,
        to_code: *const f64,
        sb: *mut f32,
    );
    fn qf_nvfp4_apply(
        n: c_long,
        x: *const f32,
        y: *mut f32,
        mask: *mut f32,
        cols: c_long,
        glen: c_long,
        gpr: c_long,
        sb: *const f32,
    );
}

/// A host buffer of a plan.
enum HostBuf {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
}

/// The arguments of one launch, taken in order with their types checked.
struct Args<'a> {
    launch: &'a Launch,
    at: usize,
    bufs: &'a mut [HostBuf],
}

impl Args<'_> {
    fn next(&mut self) -> Arg {
        let a = *self.launch.args.get(self.at).unwrap_or_else(|| panic!("{}: too few arguments", self.launch.kernel));
        self.at += 1;
        a
    }
    fn bad(&self, want: &str) -> ! {
        panic!("{}: argument {} is not {want}", self.launch.kernel, self.at - 1)
    }
    fn long(&mut self) -> c_long {
        match self.next() {
            Arg::Long(v) => v as c_long,
            _ => self.bad("a long"),
        }
    }
    fn int(&mut self) -> c_int {
        match self.next() {
            Arg::Int(v) => v,
            _ => self.bad("an int"),
        }
    }
    fn uint(&mut self) -> c_uint {
        match self.next() {
            Arg::Uint(v) => v,
            _ => self.bad("an unsigned int"),
        }
    }
    fn float(&mut self) -> f32 {
        match self.next() {
            Arg::Float(v) => v,
            _ => self.bad("a float"),
        }
    }
    fn f32p(&mut self) -> *mut f32 {
        match self.next() {
            Arg::Buf(i) => match &mut self.bufs[i] {
                HostBuf::F32(v) => v.as_mut_ptr(),
                _ => self.bad("a float buffer"),
            },
            _ => self.bad("a buffer"),
        }
    }
    fn f64p(&mut self) -> *mut f64 {
        match self.next() {
            Arg::Buf(i) => match &mut self.bufs[i] {
                HostBuf::F64(v) => v.as_mut_ptr(),
                _ => self.bad("a double buffer"),
            },
            _ => self.bad("a buffer"),
        }
    }
    fn i32p(&mut self) -> *mut i32 {
        match self.next() {
            Arg::Buf(i) => match &mut self.bufs[i] {
                HostBuf::I32(v) => v.as_mut_ptr(),
                _ => self.bad("an int buffer"),
            },
            _ => self.bad("a buffer"),
        }
    }
    fn end(self) {
        assert_eq!(self.at, self.launch.args.len(), "{}: too many arguments", self.launch.kernel);
    }
}

/// Runs `plan` on `input` with the host build of the kernels: the output and the mask.
/// Output and mask start as NaN, so a value no kernel writes shows as a difference.
pub fn run(plan: &Plan, input: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut bufs: Vec<HostBuf> = plan
        .bufs
        .iter()
        .map(|b| match *b {
            Buf::F32(n) => HostBuf::F32(vec![f32::NAN; n]),
            Buf::F64(n) => HostBuf::F64(vec![f64::NAN; n.max(1)]),
            Buf::I32(n) => HostBuf::I32(vec![i32::MIN; n.max(1)]),
        })
        .collect();
    match &mut bufs[0] {
        HostBuf::F32(v) if v.len() == input.len() => v.copy_from_slice(input),
        _ => panic!("the plan's input buffer does not hold {} values", input.len()),
    }
    for l in &plan.launches {
        let mut a = Args { launch: l, at: 0, bufs: &mut bufs };
        // SAFETY: the arguments are in the kernel's order with the kernel's types (checked by
        // `Args`), and the plan sizes every buffer for the threads that index it.
        unsafe {
            match l.kernel {
                "qf_sumsq_partial" => {
                    qf_sumsq_partial(a.long(), a.f32p(), a.long(), a.long(), a.long(), a.long(), a.f64p())
                }
                "qf_group_scale" => qf_group_scale(
                    a.long(),
                    a.f32p(),
                    a.long(),
                    a.long(),
                    a.long(),
                    a.long(),
                    a.f64p(),
                    a.int(),
                    a.float(),
                    a.f32p(),
                ),
                "qf_int_apply" => qf_int_apply(
                    a.long(),
                    a.f32p(),
                    a.f32p(),
                    a.f32p(),
                    a.long(),
                    a.long(),
                    a.long(),
                    a.f32p(),
                    a.int(),
                    a.float(),
                ),
                "qf_fp_apply" => qf_fp_apply(
                    a.long(),
                    a.f32p(),
                    a.f32p(),
                    a.f32p(),
                    a.long(),
                    a.long(),
                    a.long(),
                    a.f32p(),
                    a.float(),
                    a.float(),
                    a.uint(),
                    a.float(),
                ),
                "qf_raw_apply" => qf_raw_apply(
                    a.long(),
                    a.f32p(),
                    a.f32p(),
                    a.f32p(),
                    a.int(),
                    a.int(),
                    a.float(),
                    a.float(),
                    a.float(),
                    a.uint(),
                    a.float(),
                    a.uint(),
                ),
                "qf_mx_exponent" => qf_mx_exponent(
                    a.long(),
                    a.f32p(),
                    a.long(),
                    a.long(),
                    a.long(),
                    a.int(),
                    a.int(),
                    a.float(),
                    a.float(),
                    a.int(),
                    a.int(),
                    a.uint(),
                    a.uint(),
                    a.i32p(),
                ),
                "qf_mx_apply" => qf_mx_apply(
                    a.long(),
                    a.f32p(),
                    a.f32p(),
                    a.f32p(),
                    a.long(),
                    a.long(),
                    a.long(),
                    a.i32p(),
                    a.int(),
                    a.float(),
                    a.float(),
                    a.int(),
                    a.int(),
                    a.uint(),
                    a.float(),
                ),
                "qf_absmax_partial" => qf_absmax_partial(a.long(), a.f32p(), a.long(), a.f32p()),
                "qf_nvfp4_tensor" => qf_nvfp4_tensor(a.long(), a.f32p(), a.long(), a.f32p(), a.f64p()),
                "qf_nvfp4_scale" => {
                    qf_nvfp4_scale(a.long(), a.f32p(), a.long(), a.long(), a.long(), a.f32p(), a.f64p(), a.f32p())
                }
                "qf_nvfp4_apply" => {
                    qf_nvfp4_apply(a.long(), a.f32p(), a.f32p(), a.f32p(), a.long(), a.long(), a.long(), a.f32p())
                }
                other => panic!("no host build of kernel {other}"),
            }
        }
        a.end();
    }
    let mut take = |i: usize| match std::mem::replace(&mut bufs[i], HostBuf::I32(Vec::new())) {
        HostBuf::F32(v) => v,
        _ => unreachable!("output and mask are float buffers"),
    };
    let out = take(OUTPUT);
    let mask = take(MASK);
    (out, mask)
}
