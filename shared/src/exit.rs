//! Exit codes of `kiln submit --wait` and friends (DESIGN §8), shared so the
//! CLI and the tests agree on them.

use crate::status::WorkResult;

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const ERROR: u8 = 2;
pub const ABORTED: u8 = 3;
/// BSD `EX_USAGE`: bad command line or bad input.
pub const USAGE: u8 = 64;

/// Exit code for a finished work request.
pub fn for_result(result: Option<WorkResult>) -> u8 {
    match result {
        Some(WorkResult::Success | WorkResult::Skipped) => SUCCESS,
        Some(WorkResult::Failure) => FAILURE,
        Some(WorkResult::Error) => ERROR,
        None => ABORTED,
    }
}
