//! Interned AS names, so a lookup hands out a borrowed `&str` instead of a
//! fresh `String`.
//!
//! All names live in one string; a [`NameId`] is the span of one name in it.
//! A lookup therefore reads the name's bytes directly, with no table of
//! pointers in between.

use std::collections::HashMap;

/// An interned name: its span in a [`Names`] table. The default (empty) span
/// stands for "no name".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NameId {
    off: u32,
    len: u32,
}

impl NameId {
    /// The id meaning "no name".
    pub const NONE: NameId = NameId { off: 0, len: 0 };

    /// The span as (offset, length), for the table cache.
    pub(crate) fn raw(self) -> (u32, u32) {
        (self.off, self.len)
    }

    /// The span read back from the table cache.
    pub(crate) fn from_raw(off: u32, len: u32) -> Self {
        NameId { off, len }
    }
}

/// A table of distinct names, addressed by [`NameId`].
#[derive(Debug, Clone, Default)]
pub struct Names {
    text: String,
    count: usize,
    ids: HashMap<Box<str>, NameId>,
}

impl Names {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `name`, adding it if new. Blank names, and names that would
    /// push the table past 4 GiB of text, map to [`NameId::NONE`].
    pub fn intern(&mut self, name: &str) -> NameId {
        let name = name.trim();
        if name.is_empty() {
            return NameId::NONE;
        }
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let (Ok(off), Ok(len)) = (u32::try_from(self.text.len()), u32::try_from(name.len())) else {
            return NameId::NONE;
        };
        if off.checked_add(len).is_none() {
            return NameId::NONE;
        }
        let id = NameId { off, len };
        self.text.push_str(name);
        self.count += 1;
        self.ids.insert(Box::from(name), id);
        id
    }

    /// The name for `id`; `None` for [`NameId::NONE`] and ids from another table.
    #[inline]
    pub fn name(&self, id: NameId) -> Option<&str> {
        if id.len == 0 {
            return None;
        }
        let start = id.off as usize;
        self.text.get(start..start + id.len as usize)
    }

    /// Number of distinct non-empty names.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no name was interned.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Drops the build-time lookup map once no more names will be added.
    /// Names interned afterwards are still correct, only no longer shared.
    pub(crate) fn freeze(&mut self) {
        self.ids = HashMap::new();
        self.text.shrink_to_fit();
    }

    /// The name text and the name count, for the table cache.
    pub(crate) fn parts(&self) -> (&str, usize) {
        (&self.text, self.count)
    }

    /// A frozen table read back from the table cache.
    pub(crate) fn from_parts(text: String, count: usize) -> Self {
        Names {
            text,
            count,
            ids: HashMap::new(),
        }
    }
}

/// Two tables are equal when they hold the same names at the same ids; the
/// build-time lookup map does not count.
impl PartialEq for Names {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.count == other.count
    }
}

impl Eq for Names {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_dedupes_and_blank_is_none() {
        let mut n = Names::new();
        let a = n.intern("Example Net");
        let b = n.intern("Other, Inc.");
        assert_eq!(n.intern(" Example Net "), a);
        assert_eq!(n.intern(""), NameId::NONE);
        assert_eq!(n.name(a), Some("Example Net"));
        assert_eq!(n.name(b), Some("Other, Inc."));
        assert_eq!(n.name(NameId::NONE), None);
        assert_eq!(n.name(NameId { off: 90, len: 3 }), None);
        assert_eq!(n.len(), 2);
    }
}
