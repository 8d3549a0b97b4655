//! Options with a fixed table of names (CLI flags, the page's requests): one table read in both
//! directions, so a value's name and its parsing cannot disagree.

/// A type whose values have the names of [`Named::NAMED`].
pub trait Named: Copy + PartialEq + 'static {
    /// Every value with its name, in the order they are listed to users.
    const NAMED: &'static [(&'static str, Self)];

    /// The value's name (none for a value outside the table).
    fn name(self) -> Option<&'static str> {
        Self::NAMED
            .iter()
            .find(|(_, v)| *v == self)
            .map(|(n, _)| *n)
    }

    /// The value named `s`.
    fn from_name(s: &str) -> Option<Self> {
        Self::NAMED.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }
}
