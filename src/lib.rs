//! secintake: turns mail sent to a `security@` address into tracked security cases.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//! fetch (local files, IMAP) -> parse -> classify -> reply -> store (one transaction) -> send
//! ```
//!
//! [`parse`], [`classify`] and [`reply`] are pure: no I/O, no failure on any input. Only
//! [`fetch`], [`store`] and [`send`] touch disk or network. [`pipeline`] is the unit of work
//! that ties the pure stages to the store; [`daemon`] runs fetch and send loops for `run` and
//! `once`. See ARCHITECTURE.md for the invariants.

#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::string_slice))]

pub mod classify;
pub mod config;
pub mod daemon;
pub mod fetch;
pub mod parse;
pub mod pipeline;
pub mod reply;
pub mod send;
pub mod store;

use pipeline::{Item, Outcome, Pipeline};
use store::{Store, StoreError};

/// Messages committed per transaction by [`ingest`].
pub const BATCH_MESSAGES: usize = 500;
/// Raw bytes held per batch by [`ingest`] and per batch of an IMAP pass, whatever the count
/// (one larger message goes alone).
pub const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// What [`ingest`] reports per item: the item and its outcome, or the source's error.
pub type Report<'a, E> = Result<(&'a Item, &'a Result<Outcome, StoreError>), E>;

/// Runs the pipeline over items from any iterator, in batches, calling `report` for each
/// item (in order) once its batch is committed. Stops at the first store failure. See
/// [`Pipeline::process_stream`]: `report` runs on the writer thread.
pub fn ingest<I, E>(
    pipeline: &Pipeline,
    store: &mut Store,
    items: I,
    report: impl FnMut(Report<'_, E>) + Send,
) -> Result<(), StoreError>
where
    I: IntoIterator<Item = Result<Item, E>>,
    E: Send,
{
    pipeline.process_stream(store, items, report, &mut pipeline::NoRider)
}

/// As [`ingest`], with `rider` in each batch's transaction (e.g. a [`send::Courier`]).
pub fn ingest_with<I, E>(
    pipeline: &Pipeline,
    store: &mut Store,
    items: I,
    report: impl FnMut(Report<'_, E>) + Send,
    rider: &mut dyn pipeline::Rider,
) -> Result<(), StoreError>
where
    I: IntoIterator<Item = Result<Item, E>>,
    E: Send,
{
    pipeline.process_stream(store, items, report, rider)
}
