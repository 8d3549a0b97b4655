//! Intel AMX tiles for many activation rows at once (prefill, the layer sweep's branches): per
//! weight group (16 rows) and block of 32 values, one tile product adds the integer sums of 16
//! activation rows against the group's 16 rows (`tdpb*d`: 16 × 16 × 32 multiply-adds), and the
//! same f32 scaling as the VNNI kernel turns them into the outputs, block by block, in the same
//! order: the results are bit for bit those of [`super::group_zmm`].
//!
//! 16-bit activation levels go in as two byte planes, `q = 256·hi + lo` (`hi` signed, `lo`
//! unsigned), two tile products per block, so the integer sums stay exact. 8-bit levels are one
//! plane. Q4 levels are unpacked into the B tile (unsigned bytes); Q8_0's stored bytes already
//! are one (signed). Stable Rust has no AMX intrinsics: the tile instructions are inline
//! assembly. Linux hands out the tile state only on request (`arch_prctl`), asked once.

use core::arch::asm;
use core::arch::x86_64::*;
use std::cell::Cell;
use std::sync::OnceLock;

use super::isa::{Isa, Zmm};
use super::{BlockDot, Interleaved, QRows};
use crate::weights::blocks::BLOCK;

/// Whether this CPU and OS run AMX-INT8 tiles (`TASKVEC_AMX=0` turns them off).
pub(crate) fn ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        if std::env::var("TASKVEC_AMX").is_ok_and(|v| v == "0") {
            return false;
        }
        let edx = __cpuid_count(7, 0).edx;
        let (tile, int8) = (edx & (1 << 24) != 0, edx & (1 << 25) != 0);
        tile && int8 && os_grants_tiles()
    })
}

/// Linux: ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, the kernel enabling the tile data state
/// for this process (or saying no where it cannot).
#[cfg(target_os = "linux")]
fn os_grants_tiles() -> bool {
    // SAFETY: a plain system call with integer arguments.
    unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1023, 18) == 0 }
}

/// Elsewhere the tiles are not used.
#[cfg(not(target_os = "linux"))]
fn os_grants_tiles() -> bool {
    false
}

/// The tile palette: tmm0/tmm1 the 16 × 16 i32 sums, tmm2/tmm3 16 activation rows × 32 bytes,
/// tmm4 the group's block as 8 rows of 16 × 4 bytes.
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1; // palette 1
        // colsb (bytes per row, u16 at 16 + 2·t), rows (u8 at 48 + t)
        let tiles: [(u16, u8); 5] = [(64, 16), (64, 16), (32, 16), (32, 16), (64, 8)];
        for (t, (colsb, rows)) in tiles.into_iter().enumerate() {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&colsb.to_le_bytes());
            c[48 + t] = rows;
        }
        Config(c)
    }
}

/// Loads the tile configuration on this thread, once (it is per thread, kept across context
/// switches by the kernel).
fn configure() {
    thread_local!(static DONE: Cell<bool> = const { Cell::new(false) });
    DONE.with(|d| {
        if !d.get() {
            let cfg = Config::new();
            // SAFETY: `ready()` was true (the caller checks), the config is a valid palette 1.
            unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack)) };
            d.set(true);
        }
    });
}

/// A 64-byte-aligned sum tile (16 × 16 i32).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Sums([i32; 256]);

/// A 64-byte-aligned B tile (8 rows × 64 bytes).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Tile([u8; 512]);

/// The byte planes of 16-bit levels (`hi` signed, `lo` unsigned, each `rows × cols` in natural
/// order), from [`QRows<i16>`]'s pair order.
pub(super) fn planes(x: &QRows<i16>) -> Vec<u8> {
    let n = x.rows * x.cols;
    let mut p = vec![0u8; 2 * n];
    let (hi, lo) = p.split_at_mut(n);
    for (g, q) in x.q.chunks_exact(4).enumerate() {
        for t in 0..4 {
            let v = q[<i16 as super::Level>::ORDER[t]];
            hi[4 * g + t] = (v >> 8) as u8;
            lo[4 * g + t] = v as u8;
        }
    }
    p
}

/// One tile product `tmm0 += tmm2 · tmm4` (`$op`: the signedness pair of A and B).
macro_rules! dot_hi {
    ($op:literal) => {
        asm!(concat!($op, " tmm0, tmm2, tmm4"), options(nostack))
    };
}
/// `tmm1 += tmm3 · tmm4`.
macro_rules! dot_lo {
    ($op:literal) => {
        asm!(concat!($op, " tmm1, tmm3, tmm4"), options(nostack))
    };
}

/// Whole 16-row tiles of `x` against group `g` (outputs as [`super::group_zmm`]); returns the
/// rows done (a multiple of 16; the caller does the rest).
///
/// # Safety
/// [`ready()`] was true and the CPU has AVX-512F/BW/VL, F16C and FMA; `w` is interleaved for
/// 16 lanes; `planes` is [`planes`] of `x` when `T` is `i16`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn rows<T: BlockDot>(
    w: &Interleaved,
    g: usize,
    x: &QRows<T>,
    planes: &[u8],
    out: &mut [f32],
    stride: usize,
) -> usize {
    let wide = size_of::<T>() == 2;
    let full = x.rows / 16 * 16;
    let l = &w.layout;
    let (k, nb, bb) = (w.cols, w.cols / BLOCK, 16 * l.bytes);
    let blocks = w.group_blocks(g);
    assert!(w.kernel.lanes() == 16 && blocks.len() >= nb * bb);
    assert!(!wide || planes.len() == 2 * x.rows * k);
    assert!(full == 0 || out.len() >= (full - 1) * stride + 16);
    if full == 0 {
        return 0;
    }
    configure();
    let (a_hi, a_lo) = if wide {
        (planes.as_ptr(), planes[x.rows * k..].as_ptr())
    } else {
        (x.q.as_ptr() as *const u8, core::ptr::null())
    };
    // Q4 levels unpacked once per group into B tiles (unsigned bytes), for every row tile.
    thread_local!(static SCRATCH: std::cell::RefCell<(Vec<Tile>, Vec<Sums>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    });
    SCRATCH.with_borrow_mut(|(tiles, sums)| {
        if l.bits == 4 {
            tiles.clear();
            tiles.resize(nb, Tile([0; 512]));
            for (b, t) in tiles.iter_mut().enumerate() {
                // SAFETY: block b's 4 × 64 level bytes are inside `blocks` (asserted).
                unsafe {
                    let lv = blocks.as_ptr().add(b * bb + 16 * l.levels_at);
                    for c in 0..4 {
                        let (lo, hi) = Zmm::nibbles(Zmm::load(lv.add(64 * c)));
                        _mm512_store_si512(t.0.as_mut_ptr().add(64 * c) as *mut __m512i, lo);
                        _mm512_store_si512(t.0.as_mut_ptr().add(256 + 64 * c) as *mut __m512i, hi);
                    }
                }
            }
        }
        sums.clear();
        sums.resize(2, Sums([0; 256]));
        let (hi_sums, lo_sums) = sums.split_at_mut(1);
        let (hi_sums, lo_sums) = (hi_sums[0].0.as_mut_ptr(), lo_sums[0].0.as_mut_ptr());
        // SAFETY: tile loads read 16 rows × 32 bytes of activations at row stride k inside the
        // planes / levels (rows m0..m0 + 16 ≤ x.rows), 8 × 64 bytes of a block's levels or of an
        // unpacked tile; tile stores write the two sum tiles; vector loads stay in the blocks
        // and sums, stores in `out` (asserted).
        unsafe {
            for m0 in (0..full).step_by(16) {
                let mut acc = [Zmm::zero_f(); 16];
                for b in 0..nb {
                    let blk = blocks.as_ptr().add(b * bb);
                    let dw = Zmm::halves(blk);
                    let offset = if l.has_min {
                        Some(Zmm::halves(blk.add(32)))
                    } else if l.bits == 4 {
                        Some(Zmm::mul(dw, -l.bias))
                    } else {
                        None
                    };
                    let bt = match tiles.get(b) {
                        Some(t) if l.bits == 4 => t.0.as_ptr(),
                        _ => blk.add(16 * l.levels_at),
                    };
                    let at = m0 * k + b * BLOCK;
                    asm!(
                        "tileloadd tmm4, [{b} + {s64}]",
                        "tileloadd tmm2, [{a} + {k}]",
                        "tilezero tmm0",
                        b = in(reg) bt, s64 = in(reg) 64usize,
                        a = in(reg) a_hi.add(at), k = in(reg) k,
                        options(nostack)
                    );
                    if l.bits == 4 {
                        dot_hi!("tdpbsud")
                    } else {
                        dot_hi!("tdpbssd")
                    }
                    asm!("tilestored [{p} + {s64}], tmm0", p = in(reg) hi_sums,
                        s64 = in(reg) 64usize, options(nostack));
                    if wide {
                        asm!(
                            "tileloadd tmm3, [{a} + {k}]",
                            "tilezero tmm1",
                            a = in(reg) a_lo.add(at), k = in(reg) k,
                            options(nostack)
                        );
                        if l.bits == 4 {
                            dot_lo!("tdpbuud")
                        } else {
                            dot_lo!("tdpbusd")
                        }
                        asm!("tilestored [{p} + {s64}], tmm1", p = in(reg) lo_sums,
                            s64 = in(reg) 64usize, options(nostack));
                    }
                    for (r, a) in acc.iter_mut().enumerate() {
                        let mut dot = _mm512_load_si512(hi_sums.add(16 * r) as *const __m512i);
                        if wide {
                            let lo = _mm512_load_si512(lo_sums.add(16 * r) as *const __m512i);
                            dot = _mm512_add_epi32(_mm512_slli_epi32(dot, 8), lo);
                        }
                        let kb = (m0 + r) * nb + b;
                        *a = Zmm::scaled(*a, dot, dw, *x.d.get_unchecked(kb));
                        if let Some(o) = offset {
                            *a = Zmm::fmadd(*a, o, *x.s.get_unchecked(kb));
                        }
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    Zmm::store(out.as_mut_ptr().add((m0 + r) * stride), *a);
                }
            }
        }
    });
    full
}
