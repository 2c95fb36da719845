//! Await trees: the pending branches of a `tokio::join!` or `tokio::select!`
//! the await chain of a Pending poll ends in (see [`super::chain`]).
//!
//! Userspace compiles each fork type once at load time from the type DWARF:
//! a [`Fork`] (BPF array `CHAIN_FORKS`) says where the macro's `PollFn` keeps
//! the pointer to its tuple of branch futures and, for `select!`, its
//! `disabled` mask; each of its [`Branch`]es (BPF array `CHAIN_BRANCHES`) how
//! to tell whether the branch is pending (`join!`: its `MaybeDone`'s
//! discriminant) and the [`super::chain::Edge`] to its first state machine.
//! An edge leads to a fork instead of a state machine when its `next` has
//! [`FORK`] set.
//!
//! A poll whose chain ends at a fork is reported by a [`TreeEvent`] instead of
//! the plain poll end: the chain's own state bytes as always, and one
//! [`Segment`] (the state bytes of one pending branch's chain) per pending
//! branch, breadth first, so that a branch that forks again has its own
//! branches after it. The record and the walk are bounded: at most
//! [`MAX_SEGMENTS`] segments, [`MAX_FORK_BRANCHES`] branches looked at per
//! fork, [`super::chain::MAX_LEVELS`] levels per segment, [`MAX_STEPS`] steps
//! in all. What did not fit or could not be read is said in the record
//! ([`Segment::unread`], [`Segment::end`]), never left out silently.

/// Bit of [`super::chain::Edge::next`]: the edge leads to the fork whose id
/// is in the other bits, not to a state machine.
pub const FORK: u32 = 1 << 31;

/// Segments a [`TreeEvent`] holds: the chain down to the first fork, and
/// pending branches.
pub const MAX_SEGMENTS: usize = 12;

/// Branches of one fork the walk looks at, by position: a fork with more ends
/// its segment with [`END_WIDE`] (the later ones are not looked at).
pub const MAX_FORK_BRANCHES: u32 = 16;

/// Steps of the BPF walk in all (one level read, one branch looked at, or one
/// segment passed): a tree it does not finish sets [`TreeEvent::truncated`].
pub const MAX_STEPS: u32 = 160;

/// [`Segment::end`]: the segment's chain ended as a plain chain does (a leaf,
/// a state, an unreadable level): decoded as one.
pub const END_CHAIN: u8 = 0;
/// [`Segment::end`]: the chain ended at a fork whose pending branches are the
/// segments naming this one as `parent` (and those in `unread`).
pub const END_FORK: u8 = 1;
/// [`Segment::end`]: the chain ended at a fork whose tuple pointer or mask
/// could not be read.
pub const END_FORK_UNREADABLE: u8 = 2;
/// [`Segment::end`]: like [`END_FORK`], but the fork has more than
/// [`MAX_FORK_BRANCHES`] branches, and those after are not looked at.
pub const END_WIDE: u8 = 3;
/// [`Segment::end`]: a `join!` branch whose `MaybeDone` discriminant (in
/// `states`) is no variant the DWARF knows: not followed.
pub const END_VARIANT_UNKNOWN: u8 = 4;
/// [`Segment::end`]: the walk's steps ran out before this segment's chain was
/// read to its end.
pub const END_STEPS: u8 = 5;

/// One fork type (BPF array `CHAIN_FORKS`, by fork id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fork {
    /// Offset, in the `PollFn`, of the pointer to the tuple of branch futures.
    pub futures: u32,
    /// `select!`: the `disabled` mask's size in bytes (1 to 8); 0 for `join!`.
    pub mask_size: u32,
    /// `select!`: offset of the mask (or of the pointer to it) in the `PollFn`.
    pub mask_offset: u32,
    /// 1 when the `PollFn` holds a pointer to the mask.
    pub mask_by_ref: u32,
    /// Its first branch in `CHAIN_BRANCHES`.
    pub first_branch: u32,
    /// Its branches, all of them (the walk looks at [`MAX_FORK_BRANCHES`]).
    pub branches: u32,
}

/// One branch of a fork type (BPF array `CHAIN_BRANCHES`).
///
/// `join!`'s branch is a `MaybeDone<F>`, pending while it is `Future`: its
/// discriminant's value `future`, or any value but the `others` when
/// `future_default` (the variant without a value, a niche layout's); a value
/// in `others`, or any but `future` when `other_default`, is a finished
/// branch; any other value is unknown to the DWARF. `select!`'s branch is
/// pending while its bit of the mask is clear.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Branch {
    /// From the tuple to the branch's first state machine (or fork).
    pub root: super::chain::Edge,
    /// `join!`: offset of the `MaybeDone` discriminant in the tuple.
    pub discr_offset: u32,
    /// `join!`: its size in bytes (1, 2, 4 or 8); 0 for `select!`.
    pub discr_size: u32,
    /// The `Future` variant's value.
    pub future: u64,
    /// The other variants' values (`Done`, `Gone`), `explicit` of them.
    pub others: [u64; 2],
    /// How many of `others` hold a value.
    pub explicit: u32,
    /// 1 when `Future` is the default variant (has no value).
    pub future_default: u32,
    /// 1 when one of the other variants is the default one.
    pub other_default: u32,
    /// Unused, 0.
    pub pad: u32,
}

/// The chain of one pending branch (or, first, of the task's future down to
/// its fork), as a [`TreeEvent`] carries it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// The state bytes read, outermost in the lowest byte (for
    /// [`END_VARIANT_UNKNOWN`], the discriminant's value).
    pub states: u64,
    /// Pending branches of the fork this segment ends at that the record had
    /// no room for, one bit per position.
    pub unread: u32,
    /// The segment whose fork this is a branch of (the first segment: 0).
    pub parent: u8,
    /// Its position in that fork.
    pub branch: u8,
    /// State bytes read (0 to [`super::chain::MAX_LEVELS`]).
    pub levels: u8,
    /// How its chain ended: [`END_CHAIN`], [`END_FORK`], ….
    pub end: u8,
}

/// A poll end whose chain ends at a fork: the plain poll end (its `detail`
/// and `trigger_id` as [`super::chain`] says), then the tree's segments.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeEvent {
    /// The poll end, [`super::RawKind::PollEnd`].
    pub event: super::RawEvent,
    /// Segments filled: the first is the chain down to the first fork.
    pub segments: u32,
    /// 1 when the walk's [`MAX_STEPS`] ran out before the tree was read.
    pub truncated: u32,
    /// The segments, breadth first.
    pub segment: [Segment; MAX_SEGMENTS],
}
