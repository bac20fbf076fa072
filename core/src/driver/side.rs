//! The two sides of a migration, and a pair of values indexed by them.

use std::ops::{Index, IndexMut};

/// The source or the destination: its QEMU, its monitor, its domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    Src,
    Dst,
}

impl Side {
    /// Both sides, the source first (the order libvirt works in).
    pub const BOTH: [Side; 2] = [Side::Src, Side::Dst];

    /// The short tag transcripts and traces use: `src`, `dst`.
    pub fn tag(self) -> &'static str {
        match self {
            Side::Src => "src",
            Side::Dst => "dst",
        }
    }

    /// The word messages use: `source`, `destination`.
    pub fn noun(self) -> &'static str {
        match self {
            Side::Src => "source",
            Side::Dst => "destination",
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Src => Side::Dst,
            Side::Dst => Side::Src,
        }
    }
}

/// One value for each side, indexed by [`Side`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PerSide<T> {
    pub src: T,
    pub dst: T,
}

impl<T> PerSide<T> {
    pub fn new(src: T, dst: T) -> Self {
        PerSide { src, dst }
    }

    /// Builds both values, the source's first.
    pub fn from_fn(mut f: impl FnMut(Side) -> T) -> Self {
        let src = f(Side::Src);
        let dst = f(Side::Dst);
        PerSide { src, dst }
    }

    /// Both values with their side, the source first.
    pub fn iter(&self) -> impl Iterator<Item = (Side, &T)> {
        [(Side::Src, &self.src), (Side::Dst, &self.dst)].into_iter()
    }

    pub fn map<U>(self, mut f: impl FnMut(Side, T) -> U) -> PerSide<U> {
        PerSide {
            src: f(Side::Src, self.src),
            dst: f(Side::Dst, self.dst),
        }
    }
}

impl<T> Index<Side> for PerSide<T> {
    type Output = T;

    fn index(&self, side: Side) -> &T {
        match side {
            Side::Src => &self.src,
            Side::Dst => &self.dst,
        }
    }
}

impl<T> IndexMut<Side> for PerSide<T> {
    fn index_mut(&mut self, side: Side) -> &mut T {
        match side {
            Side::Src => &mut self.src,
            Side::Dst => &mut self.dst,
        }
    }
}
