//! The answer to a request code this broker does not serve:
//! REQUEST_CODE_NOT_SUPPORTED, naming the code and, for the codes stock
//! clients or admin tools are known to send, why it is not served and
//! what to use instead (docs/compat/request-codes.md lists the same).

use meridian_protocol::codes::{request_code as rc, response_code};
use meridian_protocol::RemotingCommand;

/// Why `code` is not served, when it is one a known client sends.
pub fn reason(code: i32) -> Option<&'static str> {
    Some(match code {
        rc::RECALL_MESSAGE => {
            "send results carry no recall handle, so a timer message cannot be withdrawn; it is delivered at its time"
        }
        rc::POP_MESSAGE
        | rc::ACK_MESSAGE
        | rc::PEEK_MESSAGE
        | rc::CHANGE_MESSAGE_INVISIBLETIME
        | rc::BATCH_ACK_MESSAGE
        | rc::NOTIFICATION
        | rc::POLLING_INFO => {
            "POP consumption is not served; consumers read with PULL_MESSAGE (QUERY_ASSIGNMENT assigns every queue in PULL mode)"
        }
        rc::SET_MESSAGE_REQUEST_MODE | rc::GET_ALL_MESSAGE_REQUEST_MODE => {
            "every queue is read in PULL mode; POP mode is not served"
        }
        rc::INVOKE_BROKER_TO_GET_CONSUMER_STATUS => {
            "ask a consumer for its status with GET_CONSUMER_RUNNING_INFO (307, `meridian admin consumerStatus`)"
        }
        rc::GET_TOPIC_CONFIG => {
            "read a broker's topic configs with GET_ALL_TOPIC_CONFIG (21)"
        }
        _ => return None,
    })
}

/// REQUEST_CODE_NOT_SUPPORTED for `req`, with the reason if known.
pub fn answer(req: &RemotingCommand) -> RemotingCommand {
    let code = req.code;
    let named = match rc::name(code) {
        Some(name) => format!("request code {code} ({name})"),
        None => format!("request code {code}"),
    };
    let remark = match reason(code) {
        Some(why) => format!("{named} is not supported by this Meridian broker: {why}"),
        None => format!("{named} is not supported by this Meridian broker"),
    };
    req.response_to(response_code::REQUEST_CODE_NOT_SUPPORTED, remark)
}
