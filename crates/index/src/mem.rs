//! Large arrays backed by huge pages where the kernel allows it.
//!
//! A query touches a few thousand random cache lines spread over hundreds
//! of megabytes. With 4 KiB pages nearly every one of those touches also
//! misses the TLB and needs a page walk, and page walks (unlike plain cache
//! misses) barely overlap; 2 MiB pages make the walks rare. Linux grants
//! transparent huge pages to anonymous memory that asks for them, which is
//! what [`zeroed`] does before the array is first written.

/// Buffers smaller than this are left alone: they gain nothing.
const MIN_BYTES: usize = 4 << 20;

/// A vector of `n` zeroed items whose memory, when large, is marked for
/// huge pages before anything touches it.
pub(crate) fn zeroed<T: bytemuck::Zeroable + Clone>(n: usize) -> Vec<T> {
    let v = vec![T::zeroed(); n];
    advise_huge(&v);
    v
}

/// Asks the kernel to back `v` with huge pages from now on. Only a hint:
/// failures (an old kernel, huge pages disabled) are ignored.
#[allow(unsafe_code)]
pub(crate) fn advise_huge<T>(v: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let bytes = std::mem::size_of_val(v);
        if bytes < MIN_BYTES {
            return;
        }
        let start = v.as_ptr() as usize;
        let first = start.next_multiple_of(PAGE);
        let end = (start + bytes) / PAGE * PAGE;
        if end <= first {
            return;
        }
        // SAFETY: MADV_HUGEPAGE changes only which page size may back the
        // range; contents, permissions and the validity of the mapping are
        // unchanged. The range lies inside `v`'s live allocation, rounded
        // inwards to page boundaries.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (v, MIN_BYTES);
}
