//! `outbound types`: the supported transport kinds, one per line or as a JSON array.

use serde_json::json;

use crate::cli::TypesArgs;
use crate::exit;
use crate::output;

pub fn run(args: TypesArgs) -> u8 {
    let kinds = outbound::supported_types();
    if args.json {
        output::json(&json!(kinds));
    } else {
        for kind in kinds {
            output::out(kind);
        }
    }
    exit::OK
}
