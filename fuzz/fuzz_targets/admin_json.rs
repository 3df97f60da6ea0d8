//! The admin API's JSON inputs: partners (with origins, keys and rate limits), clients and
//! users. Every input either parses or is refused with a 400 naming a field; none panics.
#![no_main]

use edgeward::protocol::client::parse_client_spec;
use edgeward::protocol::error::ErrorCode;
use edgeward::protocol::partner::parse_partner_spec;
use edgeward::protocol::user::parse_user_spec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for result in [
        parse_partner_spec(data).map(|_| ()),
        parse_client_spec(data).map(|_| ()),
        parse_user_spec(data, true).map(|_| ()),
        parse_user_spec(data, false).map(|_| ()),
    ] {
        if let Err(e) = result {
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{e:?}");
        }
    }
});
