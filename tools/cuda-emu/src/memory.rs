//! Device memory: host memory handed out as device pointers, with the checks a GPU does not
//! make.
//!
//! A device pointer is the host address of the buffer, so cudarc, dfdx and the crate's bridge
//! see what they see on a GPU (a `u64`), and the kernels, compiled for the CPU, dereference it
//! directly. Every allocation is its own mapping:
//!
//! ```text
//! | guard page | slack (canary) ... data (len bytes) | canary (< 8 bytes) | guard page |
//!                                   ^ the pointer      ^ end rounded up to 8
//! ```
//!
//! - The data ends where the trailing guard page begins (rounded up to 8 bytes, so that `f64`s
//!   and 8-byte atomics stay aligned): a read or write past the end faults at once, and the
//!   fault handler (`fault.rs`) names the kernel and the allocation.
//! - The few bytes between the end and the guard page, and the slack before the data, hold a
//!   canary that is checked after every launch and at every free: a write there is reported
//!   with the kernel's name. A *read* of at most 7 bytes past the end is not caught.
//! - Fresh memory is filled with `0xff` bytes: NaN as `f32` and `f64`, -1 as integers, so that a
//!   kernel reading memory nobody wrote shows up in the results (a GPU's fresh memory often
//!   happens to be zeros, which hides such bugs).
//! - Copies, memsets and cuBLAS operands are checked against the live allocations: a range that
//!   is not inside one is refused with the driver's error and a message naming the call.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// What fresh device memory is filled with (NaN in every float type).
pub const FRESH: u8 = 0xff;
/// The canary around each allocation's data.
const CANARY: u8 = 0xa5;
/// How the data's end is aligned against the trailing guard page.
const END_ALIGN: usize = 8;

/// One live allocation.
#[derive(Clone, Copy, Debug)]
pub struct Allocation {
    /// The device pointer (the host address of the first byte).
    pub ptr: u64,
    /// The size asked for.
    pub len: usize,
    /// The mapping: its first byte and its size (guard pages included).
    map: usize,
    map_len: usize,
}

impl Allocation {
    fn end(&self) -> u64 {
        self.ptr + self.len as u64
    }

    /// The bytes between the leading guard page and the data, and between the data's end and
    /// the trailing guard page: both hold the canary.
    fn canaries(&self) -> [(usize, usize); 2] {
        let page = page_size();
        let front = (self.map + page, self.ptr as usize - (self.map + page));
        let back_end = self.map + self.map_len - page;
        let back = (self.end() as usize, back_end - self.end() as usize);
        [front, back]
    }

    /// Where a canary byte was overwritten, as an offset from the pointer (negative: before).
    fn damaged(&self) -> Option<i64> {
        for (start, len) in self.canaries() {
            // SAFETY: the canary ranges lie inside this allocation's mapping, which is readable
            // and writable until it is freed (the registry's lock is held by the caller).
            let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, len) };
            if let Some(i) = bytes.iter().position(|&b| b != CANARY) {
                return Some((start + i) as i64 - self.ptr as i64);
            }
        }
        None
    }
}

/// The live allocations, by pointer.
static LIVE: Mutex<BTreeMap<u64, Allocation>> = Mutex::new(BTreeMap::new());

fn live() -> MutexGuard<'static, BTreeMap<u64, Allocation>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The live allocations without waiting (for the fault handler, which must not block).
pub fn try_live() -> Option<MutexGuard<'static, BTreeMap<u64, Allocation>>> {
    LIVE.try_lock().ok()
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Allocates `len` bytes of "device" memory, filled with [`FRESH`]. A zero-byte allocation
/// returns pointer 0 and allocates nothing (what cudarc's `null()` asks for).
pub fn alloc(len: usize) -> Result<u64, String> {
    if len == 0 {
        return Ok(0);
    }
    let page = page_size();
    let data_pages = len.div_ceil(END_ALIGN) * END_ALIGN;
    let data_pages = data_pages.div_ceil(page) * page;
    let map_len = data_pages + 2 * page;
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(format!(
            "cannot map {len} bytes: {}",
            std::io::Error::last_os_error()
        ));
    }
    let map = map as usize;
    let back_guard = map + map_len - page;
    let ptr = back_guard - len.div_ceil(END_ALIGN) * END_ALIGN;
    // SAFETY: both guard pages are inside the mapping just made; the data range
    // [ptr, ptr + len) and the canaries lie between them.
    unsafe {
        libc::mprotect(map as *mut _, page, libc::PROT_NONE);
        libc::mprotect(back_guard as *mut _, page, libc::PROT_NONE);
        std::ptr::write_bytes((map + page) as *mut u8, CANARY, ptr - (map + page));
        std::ptr::write_bytes(ptr as *mut u8, FRESH, len);
        std::ptr::write_bytes((ptr + len) as *mut u8, CANARY, back_guard - (ptr + len));
    }
    let a = Allocation {
        ptr: ptr as u64,
        len,
        map,
        map_len,
    };
    live().insert(a.ptr, a);
    Ok(a.ptr)
}

/// Frees an allocation made by [`alloc`]; freeing pointer 0 does nothing.
pub fn free(ptr: u64) -> Result<(), String> {
    if ptr == 0 {
        return Ok(());
    }
    let a = live()
        .remove(&ptr)
        .ok_or_else(|| format!("{ptr:#x} is not the start of a live allocation"))?;
    let damaged = a.damaged();
    // SAFETY: the mapping was made by `alloc` and is no longer in the registry, so no one can
    // reach it through this crate any more.
    unsafe { libc::munmap(a.map as *mut _, a.map_len) };
    match damaged {
        Some(at) => Err(canary_message("at its free", &a, at)),
        None => Ok(()),
    }
}

fn canary_message(when: &str, a: &Allocation, at: i64) -> String {
    let place = if at < 0 {
        format!("{} bytes before its start", -at)
    } else {
        format!("{} bytes past its end", at as u64 - a.len as u64 + 1)
    };
    format!(
        "found {when}: a write {place} of the {}-byte allocation at {:#x}",
        a.len, a.ptr
    )
}

/// Checks every live allocation's canaries (after a launch); the first damage found, described.
pub fn check_canaries() -> Result<(), String> {
    for a in live().values() {
        if let Some(at) = a.damaged() {
            return Err(canary_message("after the launch", a, at));
        }
    }
    Ok(())
}

/// Checks that `[ptr, ptr + len)` lies inside one live allocation; `what` names the operand in
/// the message. An empty range is always fine.
pub fn check_range(ptr: u64, len: usize, what: &str) -> Result<(), String> {
    if len == 0 {
        return Ok(());
    }
    let live = live();
    match live.range(..=ptr).next_back() {
        Some((_, a)) if ptr < a.end() => {
            let end = ptr
                .checked_add(len as u64)
                .ok_or_else(|| format!("{what}: {len} bytes from {ptr:#x} overflow"))?;
            if end <= a.end() {
                Ok(())
            } else {
                Err(format!(
                    "{what}: {len} bytes from {ptr:#x} (offset {}) run {} bytes past the end of the {}-byte allocation at {:#x}",
                    ptr - a.ptr,
                    end - a.end(),
                    a.len,
                    a.ptr
                ))
            }
        }
        _ => Err(format!(
            "{what}: {ptr:#x} ({len} bytes) is not inside any live allocation"
        )),
    }
}

/// Describes where `addr` lies relative to the nearest live allocations (for fault messages).
pub fn describe(addr: u64, live: &BTreeMap<u64, Allocation>) -> String {
    let below = live.range(..=addr).next_back().map(|(_, a)| *a);
    let above = live.range(addr + 1..).next().map(|(_, a)| *a);
    match (below, above) {
        (Some(a), _) if addr < a.end() => format!(
            "offset {} of the {}-byte allocation at {:#x}",
            addr - a.ptr,
            a.len,
            a.ptr
        ),
        (Some(a), _) if addr - a.end() < page_size() as u64 + END_ALIGN as u64 => format!(
            "{} bytes past the end of the {}-byte allocation at {:#x}",
            addr - a.end() + 1,
            a.len,
            a.ptr
        ),
        (_, Some(a)) if a.ptr - addr <= page_size() as u64 * 2 => format!(
            "{} bytes before the {}-byte allocation at {:#x}",
            a.ptr - addr,
            a.len,
            a.ptr
        ),
        _ => "not near any live allocation".to_string(),
    }
}

/// Bytes in live allocations, and how many there are.
pub fn usage() -> (usize, usize) {
    let live = live();
    (live.values().map(|a| a.len).sum(), live.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_memory_is_nan_and_ranges_are_checked() {
        let p = alloc(12).unwrap();
        // SAFETY: 12 bytes were just allocated at p.
        let v = unsafe { std::slice::from_raw_parts(p as *const f32, 3) };
        assert!(v.iter().all(|x| x.is_nan()));
        check_range(p, 12, "x").unwrap();
        check_range(p + 4, 8, "x").unwrap();
        let e = check_range(p + 4, 12, "copy").unwrap_err();
        assert!(e.contains("run 4 bytes past the end"), "{e}");
        assert!(check_range(p + 12, 1, "x").is_err());
        free(p).unwrap();
        assert!(check_range(p, 1, "x").is_err());
        assert!(free(p).is_err());
    }

    #[test]
    fn a_write_into_the_slack_is_reported() {
        let p = alloc(12).unwrap();
        // SAFETY: the 4 bytes after a 12-byte allocation are its canary, inside the mapping.
        unsafe { *((p + 12) as *mut u8) = 0 };
        let e = free(p).unwrap_err();
        assert!(e.contains("1 bytes past its end"), "{e}");
    }

    #[test]
    fn zero_bytes_is_the_null_pointer() {
        assert_eq!(alloc(0).unwrap(), 0);
        free(0).unwrap();
    }
}
