//! Host buffers reused from one training step to the next.
//!
//! A LeNet step on 256 images moves tens of megabytes through buffers of the same few sizes.
//! Allocated fresh each time, large ones come from `mmap` and go back on `free`, so every step
//! pays for hundreds of page faults (a quarter of the step's time in a profile). Kept in a pool
//! instead, they stay mapped.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Buffers waiting to be reused, per element type.
pub struct BufferPool<E>(Mutex<Vec<Vec<E>>>);

impl<E> BufferPool<E> {
    /// An empty pool (for the `static` each [`Float`] type keeps).
    pub const fn new() -> Self {
        BufferPool(Mutex::new(Vec::new()))
    }
}

impl<E> Default for BufferPool<E> {
    fn default() -> Self {
        Self::new()
    }
}

/// An element type with a buffer pool of its own.
pub trait Pooled: Copy + Default + Send + 'static {
    /// The pool.
    fn pool() -> &'static BufferPool<Self>;
}

macro_rules! pooled {
    ($($t:ty),*) => {$(
        impl Pooled for $t {
            fn pool() -> &'static BufferPool<Self> {
                static POOL: BufferPool<$t> = BufferPool::new();
                &POOL
            }
        }
    )*};
}
pooled!(f32, f64, u32);

/// More buffers than this are freed rather than kept: a network uses a few per layer.
const KEEP: usize = 64;

/// A `Vec` from the pool, returned to it when dropped.
pub(crate) struct Buffer<E: Pooled>(Vec<E>);

impl<E: Pooled> Buffer<E> {
    /// `len` zeros (`Default` values).
    pub(crate) fn zeroed(len: usize) -> Self {
        match take::<E>(len) {
            Some(mut v) => {
                v.clear();
                v.resize(len, E::default());
                Buffer(v)
            }
            None => Buffer(vec![E::default(); len]),
        }
    }

    /// `len` values to be overwritten before they are read: a reused buffer keeps its old
    /// contents (valid values of `E`, just stale), which saves clearing it.
    ///
    /// A new buffer comes zeroed from the allocator (`calloc`: fresh pages are zero already, so
    /// nothing is written until the kernel writes it; a `resize` would write every page twice).
    pub(crate) fn for_overwrite(len: usize) -> Self {
        let Some(mut v) = take::<E>(len) else {
            return Buffer(vec![E::default(); len]);
        };
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, E::default());
        }
        Buffer(v)
    }

    /// Takes the `Vec` out of the pool's care (to hand it to a tensor).
    pub(crate) fn into_vec(mut self) -> Vec<E> {
        std::mem::take(&mut self.0)
    }
}

/// The smallest pooled buffer that holds `len` elements, if there is one.
fn take<E: Pooled>(len: usize) -> Option<Vec<E>> {
    let mut pool = E::pool().0.lock().unwrap_or_else(|e| e.into_inner());
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, v)| v.capacity() >= len)
        .min_by_key(|(_, v)| v.capacity())
        .map(|(i, _)| i);
    best.map(|i| pool.swap_remove(i))
}

impl<E: Pooled> Drop for Buffer<E> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.capacity() == 0 {
            return;
        }
        let mut pool = E::pool().0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() >= KEEP {
            // Keep the larger buffers: they are the expensive ones to map again.
            let (i, smallest) = pool
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| v.capacity())
                .expect("pool is full");
            if smallest.capacity() >= v.capacity() {
                return;
            }
            pool.swap_remove(i);
        }
        pool.push(v);
    }
}

impl<E: Pooled> Deref for Buffer<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        &self.0
    }
}

impl<E: Pooled> DerefMut for Buffer<E> {
    fn deref_mut(&mut self) -> &mut [E] {
        &mut self.0
    }
}

/// Maps every page of `d` for writing before a kernel adds into it (`*d += g`).
///
/// dfdx allocates a gradient zeroed, from pages the kernel has not mapped yet. A kernel that
/// adds into it reads each page first, which maps the shared zero page, then writes it, which
/// faults a second time to give the page a frame of its own and flushes the stale mapping from
/// every other core's TLB, by an interprocessor interrupt per page. In a profile of a `resnet`
/// training step that was 18% of the time. An atomic read-modify-write of one byte per page
/// (a compare-and-swap of 0 for 0, which keeps any value) is a write to the processor, so each page faults
/// once, straight to a frame of its own. On pages already mapped it costs one instruction per
/// 4 KiB.
pub(crate) fn map_for_writing<E: Copy>(d: &mut [E]) {
    use std::sync::atomic::{AtomicU8, Ordering};
    const PAGE: usize = 4096;
    let bytes = std::mem::size_of_val(d);
    let p = d.as_mut_ptr().cast::<u8>();
    let first_boundary = p.align_offset(PAGE);
    let offsets = (bytes > 0)
        .then_some(0)
        .into_iter()
        .chain((first_boundary..bytes).step_by(PAGE).filter(|&o| o != 0));
    for o in offsets {
        // SAFETY: `o < bytes`, so the byte lies inside `d`, which this function borrows
        // exclusively (no other access can race with the atomic one); any byte is a valid
        // `u8`, and a `u8` atomic needs no alignment.
        let byte = unsafe { AtomicU8::from_ptr(p.add(o)) };
        // Not `fetch_or(0)`: LLVM turns an idempotent read-modify-write into a plain load.
        let _ = byte.compare_exchange(0, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}
