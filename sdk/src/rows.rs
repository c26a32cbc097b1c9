//! Row and group iteration: the input, output and (optional) mask of each
//! group of `g` consecutive values within a row, in lockstep.
//!
//! `g = 0` means a whole row. When `cols` is not a multiple of `g`, the last
//! group of each row is shorter (`cols % g` values); groups never straddle
//! rows. Each group knows its row and its flat offset in the tensor (for
//! stochastic rounding, whose random numbers are indexed by element).
//!
//! ```
//! use sdk::rows::groups;
//! let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
//! let mut y = vec![0.0; 10];
//! // 2 rows of 5, groups of 2: [0,1] [2,3] [4] | [5,6] [7,8] [9]
//! let lens: Vec<_> = groups(&x, &mut y, None, 5, 2).map(|g| (g.row, g.offset, g.input.len())).collect();
//! assert_eq!(lens, [(0, 0, 2), (0, 2, 2), (0, 4, 1), (1, 5, 2), (1, 7, 2), (1, 9, 1)]);
//! ```

use crate::{Error, Result, Tensor};

/// Effective group length: `group`, or `cols` when `group` is 0 or larger than `cols`.
pub fn group_len(cols: usize, group: usize) -> usize {
    if group == 0 || group > cols { cols } else { group }
}

/// Number of groups in one row (`ceil(cols / group_len)`).
pub fn groups_per_row(cols: usize, group: usize) -> usize {
    let g = group_len(cols, group);
    if g == 0 { 0 } else { cols.div_ceil(g) }
}

/// Bits per element of a format storing `element_bits` per value plus one
/// `scale_bits` scale per group of `group` values along each row (0 = one
/// per row; a row's shorter last group stores a scale too).
///
/// ```
/// // INT4 with a 16-bit scale per group of 32 on 4096-wide rows:
/// let b = sdk::rows::grouped_bits(4.0, 16, 4096, 32);
/// assert_eq!(b.total(), 4.5);
/// ```
pub fn grouped_bits(element_bits: f64, scale_bits: u32, cols: usize, group: usize) -> crate::Bits {
    let cols = cols.max(1);
    let glen = group_len(cols, group);
    crate::Bits::elements(element_bits).plus(
        format!("scale ({scale_bits}-bit) per {glen}"),
        (scale_bits as usize * groups_per_row(cols, group)) as f64 / cols as f64,
    )
}

/// Checks that a tensor's slices have the lengths its shape says.
pub fn check(t: &Tensor<'_>) -> Result<()> {
    let n = t.shape.len();
    if t.input.len() != n || t.output.len() != n {
        return Err(Error::input(format!(
            "a {} tensor needs {n} values, got input {} and output {}",
            t.shape,
            t.input.len(),
            t.output.len()
        )));
    }
    match &t.mask {
        Some(m) if m.len() != n => {
            Err(Error::input(format!("a {} tensor needs a mask of {n} values, got {}", t.shape, m.len())))
        }
        _ => Ok(()),
    }
}

/// One group: input values, where their outputs go, their mask entries.
pub struct Group<'a> {
    /// Input values of the group.
    pub input: &'a [f32],
    /// Output values of the group (same length).
    pub output: &'a mut [f32],
    /// Mask entries of the group, when a mask was asked for.
    pub mask: Option<&'a mut [f32]>,
    /// Row the group belongs to.
    pub row: usize,
    /// Flat index of the group's first value in the tensor.
    pub offset: usize,
}

/// Iterator over the [`Group`]s of a tensor; see [`groups`].
pub struct Groups<'a> {
    input: &'a [f32],
    output: &'a mut [f32],
    mask: Option<&'a mut [f32]>,
    pos: Position,
}

/// Where the next group starts; advanced without divisions.
struct Position {
    cols: usize,
    glen: usize,
    offset: usize,
    row: usize,
    col: usize,
}

impl Position {
    fn new(cols: usize, group: usize) -> Self {
        Position { cols, glen: group_len(cols, group), offset: 0, row: 0, col: 0 }
    }

    /// Length, row and offset of the next group of a buffer with `left` values left; advances.
    #[inline]
    fn advance(&mut self, left: usize) -> Option<(usize, usize, usize)> {
        if left == 0 || self.glen == 0 {
            return None;
        }
        let len = self.glen.min(self.cols - self.col).min(left);
        let at = (len, self.row, self.offset);
        self.offset += len;
        self.col += len;
        if self.col >= self.cols {
            self.col = 0;
            self.row += 1;
        }
        Some(at)
    }
}

/// Groups of `group` values within rows of `cols` (`group = 0`: whole rows).
///
/// # Panics
/// When `output` (or `mask`) is not as long as `input`.
pub fn groups<'a>(
    input: &'a [f32],
    output: &'a mut [f32],
    mask: Option<&'a mut [f32]>,
    cols: usize,
    group: usize,
) -> Groups<'a> {
    assert_eq!(input.len(), output.len(), "groups: input and output lengths differ");
    if let Some(m) = &mask {
        assert_eq!(input.len(), m.len(), "groups: input and mask lengths differ");
    }
    Groups { input, output, mask, pos: Position::new(cols, group) }
}

/// The groups of a [`Tensor`] (rows of `t.shape.cols`).
pub fn tensor_groups<'a>(t: Tensor<'a>, group: usize) -> Groups<'a> {
    groups(t.input, t.output, t.mask, t.shape.cols, group)
}

fn take_front<'a>(s: &mut &'a mut [f32], n: usize) -> &'a mut [f32] {
    let (a, b) = std::mem::take(s).split_at_mut(n);
    *s = b;
    a
}

impl<'a> Iterator for Groups<'a> {
    type Item = Group<'a>;

    #[inline]
    fn next(&mut self) -> Option<Group<'a>> {
        let (len, row, offset) = self.pos.advance(self.input.len())?;
        let (input, rest) = self.input.split_at(len);
        self.input = rest;
        let output = take_front(&mut self.output, len);
        let mask = self.mask.as_mut().map(|m| take_front(m, len));
        Some(Group { input, output, mask, row, offset })
    }
}

/// One group of an in-place iteration: values to transform, their mask entries.
pub struct GroupMut<'a> {
    /// The values of the group, to be replaced in place.
    pub data: &'a mut [f32],
    /// Mask entries of the group, when a mask was asked for.
    pub mask: Option<&'a mut [f32]>,
    /// Row the group belongs to.
    pub row: usize,
    /// Flat index of the group's first value in the tensor.
    pub offset: usize,
}

/// Iterator over the [`GroupMut`]s of a buffer; see [`groups_mut`].
pub struct GroupsMut<'a> {
    data: &'a mut [f32],
    mask: Option<&'a mut [f32]>,
    pos: Position,
}

/// In-place groups of `group` values within rows of `cols` (for a buffer
/// that was transformed first, e.g. Hadamard-rotated).
///
/// # Panics
/// When `mask` is not as long as `data`.
pub fn groups_mut<'a>(data: &'a mut [f32], mask: Option<&'a mut [f32]>, cols: usize, group: usize) -> GroupsMut<'a> {
    if let Some(m) = &mask {
        assert_eq!(data.len(), m.len(), "groups_mut: data and mask lengths differ");
    }
    GroupsMut { data, mask, pos: Position::new(cols, group) }
}

impl<'a> Iterator for GroupsMut<'a> {
    type Item = GroupMut<'a>;

    #[inline]
    fn next(&mut self) -> Option<GroupMut<'a>> {
        let (len, row, offset) = self.pos.advance(self.data.len())?;
        let data = take_front(&mut self.data, len);
        let mask = self.mask.as_mut().map(|m| take_front(m, len));
        Some(GroupMut { data, mask, row, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shape;

    #[test]
    fn lengths() {
        assert_eq!((group_len(256, 0), group_len(256, 32), group_len(16, 32)), (256, 32, 16));
        assert_eq!((groups_per_row(256, 0), groups_per_row(256, 32), groups_per_row(100, 32)), (1, 8, 4));
        assert_eq!(groups_per_row(0, 32), 0);
    }

    #[test]
    fn lockstep_with_mask() {
        let x: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut y = vec![0.0; 12];
        let mut m = vec![1.0; 12];
        for g in groups(&x, &mut y, Some(&mut m), 6, 4) {
            let first = g.input[0];
            for (o, i) in g.output.iter_mut().zip(g.input) {
                *o = i * 10.0;
            }
            let mask = g.mask.unwrap();
            assert_eq!(mask.len(), g.input.len());
            mask[0] = first;
            assert_eq!(g.offset as f32, first);
            assert_eq!(g.row, g.offset / 6);
        }
        assert_eq!(y, x.iter().map(|v| v * 10.0).collect::<Vec<_>>());
        assert_eq!(m, [0.0, 1.0, 1.0, 1.0, 4.0, 1.0, 6.0, 1.0, 1.0, 1.0, 10.0, 1.0]);
    }

    #[test]
    fn whole_rows_and_empty() {
        let x = vec![1.0f32; 6];
        let mut y = vec![0.0; 6];
        assert_eq!(groups(&x, &mut y, None, 3, 0).count(), 2);
        assert_eq!(groups(&[], &mut [], None, 0, 0).count(), 0);
        let mut d = vec![0.0f32; 7];
        let lens: Vec<_> = groups_mut(&mut d, None, 7, 3).map(|g| g.data.len()).collect();
        assert_eq!(lens, [3, 3, 1]);
    }

    #[test]
    fn check_lengths() {
        let x = [0.0f32; 6];
        let mut y = [0.0f32; 6];
        let t = Tensor { input: &x, output: &mut y, mask: None, shape: Shape::new(2, 3), seed: 0 };
        assert!(check(&t).is_ok());
        let mut y5 = [0.0f32; 5];
        let t = Tensor { input: &x, output: &mut y5, mask: None, shape: Shape::new(2, 3), seed: 0 };
        assert!(check(&t).is_err());
        let mut m = [1.0f32; 2];
        let t = Tensor { input: &x, output: &mut y, mask: Some(&mut m), shape: Shape::new(2, 3), seed: 0 };
        assert!(check(&t).unwrap_err().to_string().contains("mask"));
    }
}
