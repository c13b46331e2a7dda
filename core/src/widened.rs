//! Dense weights widened to int16, for the Arm DSP kernels: a table a firmware build keeps in
//! flash beside the model, trading flash for speed.
//!
//! A dense layer's int8 weights cost the DSP kernels two `SXTB16` per four weights and row
//! before `SMLAD` can multiply them; widened once, ahead of time, they are loaded four rows
//! and four inputs at a time and multiplied as they lie, for twice the dense weights' bytes
//! of flash. The outputs are the same bytes: the table only changes how the same products
//! are computed. The README gives what it saves on the MLPerf Tiny autoencoder.
//!
//! The table is made by [`widen_dense`] from a loaded model (the firmware's build script
//! does it on the build machine), sized by the `const fn` [`table_bytes`], and handed to
//! [`Int8Model::with_widened_dense`](crate::Int8Model::with_widened_dense); the kernels that
//! read it are compiled with the crate's `widened-dense` feature (without it the table is
//! checked and left unused). Its layout:
//!
//! - the model's CRC-32 and the table's length in bytes, little-endian `u32`s, so that a
//!   table made for another model, or cut short, is refused;
//! - per dense step of the inference, in order, [`dense_bytes`] bytes: the layer's rows in
//!   blocks of [`BLOCK_ROWS`] (the last block padded with zero rows), each block in groups
//!   of four inputs (the last padded with zeros), each group the block's four rows, each row
//!   its four weights as little-endian `i16` in the order `w0 w2 w1 w3`, the order in which
//!   the kernels widen the input (`SXTB16` takes bytes 0 and 2, then 1 and 3).

use crate::Error;
use crate::arch::Architecture;
use crate::format::{Int8Model, peek_architecture};
use crate::plan::{Cursor, Operation};

/// Bytes before the first layer's weights: the model's CRC and the table's length.
pub const HEADER_BYTES: usize = 8;

/// Rows a kernel call computes together, and the blocks' height.
pub const BLOCK_ROWS: usize = 4;

/// Inputs a group holds.
const GROUP_INPUTS: usize = 4;

/// Bytes of one dense layer's widened weights: its rows and inputs rounded up to multiples
/// of four, two bytes each.
pub const fn dense_bytes(inputs: usize, outputs: usize) -> usize {
    outputs.div_ceil(BLOCK_ROWS) * BLOCK_ROWS * inputs.div_ceil(GROUP_INPUTS) * GROUP_INPUTS * 2
}

/// Bytes of the table of `architecture`: the header and every dense step's weights; 0 for a
/// network without dense layers.
pub const fn table_bytes_of(architecture: &Architecture) -> usize {
    let mut bytes = 0;
    let mut cursor = Cursor::new(architecture);
    while let Some(step) = cursor.next(architecture) {
        if let Operation::Dense = step.operation {
            bytes += dense_bytes(step.input.values(), step.output.values());
        }
    }
    if bytes == 0 { 0 } else { HEADER_BYTES + bytes }
}

/// [`table_bytes_of`] the model file `model`, for a firmware's `static`; 0 when its
/// description cannot be read (loading it reports why).
pub const fn table_bytes(model: &[u8]) -> usize {
    match peek_architecture(model) {
        Ok((_, architecture)) => table_bytes_of(&architecture),
        Err(_) => 0,
    }
}

/// Writes the widened table of `model` into `table`, which must be exactly
/// [`table_bytes_of`] its architecture long ([`Error::BufferTooSmall`] otherwise).
pub fn widen_dense(model: &Int8Model<'_>, table: &mut [u8]) -> Result<(), Error> {
    let architecture = model.architecture();
    let needed = table_bytes_of(architecture);
    if table.len() != needed {
        return Err(Error::BufferTooSmall {
            needed,
            available: table.len(),
        });
    }
    let Some((header, mut rest)) = table.split_at_mut_checked(HEADER_BYTES) else {
        return Ok(());
    };
    let length = u32::try_from(needed).map_err(|_| Error::TooLarge)?;
    for (slot, byte) in header.iter_mut().zip(
        model
            .header()
            .crc
            .to_le_bytes()
            .into_iter()
            .chain(length.to_le_bytes()),
    ) {
        *slot = byte;
    }
    let mut cursor = Cursor::new(architecture);
    while let Some(step) = cursor.next(architecture) {
        if !matches!(step.operation, Operation::Dense) {
            continue;
        }
        let (inputs, outputs) = (step.input.values(), step.output.values());
        let record = step
            .layer
            .record
            .and_then(|index| model.layers().nth(index))
            .ok_or(Error::Malformed)?;
        let (layer, after) = rest
            .split_at_mut_checked(dense_bytes(inputs, outputs))
            .ok_or(Error::Malformed)?;
        widen_layer(record.weights, inputs, outputs, layer)?;
        rest = after;
    }
    Ok(())
}

/// Writes one dense layer's widened weights (`rows`: `outputs` rows of `inputs` int8
/// weights) into `widened`, of [`dense_bytes`] bytes; [`Error::Malformed`] when the lengths
/// do not fit. Kernel tests build their layers' tables with it.
pub fn widen_layer(
    rows: &[u8],
    inputs: usize,
    outputs: usize,
    widened: &mut [u8],
) -> Result<(), Error> {
    if rows.len() != inputs * outputs || widened.len() != dense_bytes(inputs, outputs) {
        return Err(Error::Malformed);
    }
    let weight = |row: usize, input: usize| -> i16 {
        if row < outputs && input < inputs {
            rows.get(row * inputs + input)
                .map_or(0, |&w| i16::from(w as i8))
        } else {
            0
        }
    };
    let groups = inputs.div_ceil(GROUP_INPUTS);
    // Each group of a block: 4 rows x 4 weights x 2 bytes.
    let group_bytes = BLOCK_ROWS * GROUP_INPUTS * 2;
    for (index, group) in widened.chunks_exact_mut(group_bytes).enumerate() {
        let (block, group_index) = (index / groups, index % groups);
        for (row_in_block, row_bytes) in group.chunks_exact_mut(GROUP_INPUTS * 2).enumerate() {
            let row = block * BLOCK_ROWS + row_in_block;
            let first = group_index * GROUP_INPUTS;
            let ordered = [first, first + 2, first + 1, first + 3].map(|input| weight(row, input));
            for (pair, value) in row_bytes.chunks_exact_mut(2).zip(ordered) {
                pair.copy_from_slice(&value.to_le_bytes());
            }
        }
    }
    Ok(())
}

/// Checks that `table` is `model`'s widened table: its CRC, and the length its
/// architecture needs.
pub(crate) fn check_table(model: &Int8Model<'_>, table: &[u8]) -> Result<(), Error> {
    let needed = table_bytes_of(model.architecture());
    let word = |at: usize| {
        table
            .get(at..at + 4)
            .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
            .map(u32::from_le_bytes)
    };
    let (Some(crc), Some(length)) = (word(0), word(4)) else {
        return Err(Error::WidenedTableLength {
            needed,
            found: table.len(),
        });
    };
    if crc != model.header().crc {
        return Err(Error::WidenedForAnotherModel {
            table_model: crc,
            model: model.header().crc,
        });
    }
    if table.len() != needed || usize::try_from(length).ok() != Some(needed) {
        return Err(Error::WidenedTableLength {
            needed,
            found: table.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_is_laid_out_in_blocks_of_four_rows_and_groups_of_four_inputs() {
        // 5 rows of 6 inputs: weight (r, i) = 10 r + i.
        let (inputs, outputs) = (6, 5);
        let rows: std::vec::Vec<u8> = (0..outputs)
            .flat_map(|r| (0..inputs).map(move |i| (10 * r + i) as u8))
            .collect();
        let mut widened = std::vec![0xAAu8; dense_bytes(inputs, outputs)];
        assert_eq!(widened.len(), 8 * 8 * 2);
        widen_layer(&rows, inputs, outputs, &mut widened).unwrap();
        let values: std::vec::Vec<i16> = widened
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        // Block 0, group 0: rows 0-3, inputs 0 2 1 3.
        assert_eq!(&values[..8], &[0, 2, 1, 3, 10, 12, 11, 13]);
        assert_eq!(&values[8..16], &[20, 22, 21, 23, 30, 32, 31, 33]);
        // Block 0, group 1: inputs 4 6 5 7, of which 6 and 7 are padding.
        assert_eq!(&values[16..20], &[4, 0, 5, 0]);
        // Block 1, group 0: row 4, then three rows of padding.
        assert_eq!(&values[32..36], &[40, 42, 41, 43]);
        assert!(values[36..48].iter().all(|&v| v == 0));
        assert_eq!(&values[48..52], &[44, 0, 45, 0]);
    }

    #[test]
    fn negative_weights_stay_negative() {
        let rows = [0x80u8, 0xFF, 0x7F, 0x01];
        let mut widened = [0u8; 32];
        widen_layer(&rows, 4, 1, &mut widened).unwrap();
        assert_eq!(
            &widened[..8],
            &[0x80, 0xFF, 0x7F, 0x00, 0xFF, 0xFF, 0x01, 0x00]
        );
    }

    /// The small shipped network: three convolutions, then `dense:64` and `dense:10`.
    const SMALL: &[u8] = include_bytes!("../../data/small/model-int8.tcnn");

    fn small_table() -> (Int8Model<'static>, std::vec::Vec<u8>) {
        let model = Int8Model::from_bytes(SMALL).unwrap();
        let mut table = std::vec![0; table_bytes(SMALL)];
        widen_dense(&model, &mut table).unwrap();
        (model, table)
    }

    #[test]
    fn a_models_table_holds_its_dense_layers_after_the_crc_and_length() {
        let (model, table) = small_table();
        // dense:64 on the last convolution's 3x3x64 map, dense:10 on its 64 outputs.
        let first = dense_bytes(576, 64);
        assert_eq!(table.len(), HEADER_BYTES + first + dense_bytes(64, 10));
        assert_eq!(table_bytes_of(model.architecture()), table.len());
        assert_eq!(table[..4], model.header().crc.to_le_bytes());
        assert_eq!(table[4..8], (table.len() as u32).to_le_bytes());
        let dense = model.layers().nth(3).unwrap();
        let mut expected = std::vec![0; first];
        widen_layer(dense.weights, 576, 64, &mut expected).unwrap();
        assert_eq!(&table[HEADER_BYTES..HEADER_BYTES + first], &expected[..]);
        assert_eq!(table_bytes(b"not a model"), 0);
    }

    #[test]
    fn a_model_takes_its_own_table_and_refuses_others() {
        let (model, mut table) = small_table();
        let widened = model.with_widened_dense(&table).unwrap();
        assert_eq!(widened.widened_dense().len(), table.len());
        assert_eq!(
            model
                .with_widened_dense(&table[..table.len() - 4])
                .unwrap_err(),
            Error::WidenedTableLength {
                needed: table.len(),
                found: table.len() - 4
            }
        );
        assert!(matches!(
            model.with_widened_dense(&[]),
            Err(Error::WidenedTableLength { found: 0, .. })
        ));
        table[0] ^= 1;
        assert_eq!(
            model.with_widened_dense(&table).unwrap_err(),
            Error::WidenedForAnotherModel {
                table_model: model.header().crc ^ 1,
                model: model.header().crc
            }
        );
        let mut short = std::vec![0; table.len() - 1];
        assert!(matches!(
            widen_dense(&model, &mut short),
            Err(Error::BufferTooSmall { .. })
        ));
    }

    #[test]
    fn wrong_lengths_are_refused() {
        let mut widened = [0u8; 32];
        assert_eq!(
            widen_layer(&[0; 3], 4, 1, &mut widened),
            Err(Error::Malformed)
        );
        assert_eq!(
            widen_layer(&[0; 4], 4, 1, &mut widened[..16]),
            Err(Error::Malformed)
        );
    }
}
