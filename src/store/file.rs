//! Embedded file store (in progress).
