//! Whole-system tests for kubescribe; the tests live in `tests/`.
