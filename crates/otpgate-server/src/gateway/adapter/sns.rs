//! AWS SNS `Publish` to a phone number (fallback), signed with SigV4.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Accepted, Adapter, RemoteState, SendError, exchange, form_encode, sigv4};
use crate::clock::Clock;
use crate::gateway::Outgoing;
use crate::gateway::config::Secret;

/// AWS SNS `Publish` to a phone number (fallback), signed with SigV4.
pub(super) struct Sns {
    pub(super) http: reqwest::Client,
    pub(super) url: String,
    pub(super) region: String,
    pub(super) access_key: String,
    pub(super) secret_key: Secret,
    pub(super) clock: Arc<dyn Clock>,
}

#[async_trait]
impl Adapter for Sns {
    async fn send(&self, msg: &Outgoing) -> Result<Accepted, SendError> {
        let body = form_encode(&[
            ("Action", "Publish"),
            ("Message", &msg.text),
            ("MessageAttributes.entry.1.Name", "AWS.SNS.SMS.SMSType"),
            ("MessageAttributes.entry.1.Value.DataType", "String"),
            (
                "MessageAttributes.entry.1.Value.StringValue",
                "Transactional",
            ),
            ("PhoneNumber", &msg.phone),
            ("Version", "2010-03-31"),
        ]);
        let url = reqwest::Url::parse(&self.url).map_err(|_| SendError::Rejected {
            status: 0,
            detail: "bad url".into(),
        })?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => {
                return Err(SendError::Rejected {
                    status: 0,
                    detail: "bad url".into(),
                });
            }
        };
        let amz_date = sigv4::amz_date(self.clock.now_ms());
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let headers = [
            ("content-type", content_type),
            ("host", host.as_str()),
            ("x-amz-date", amz_date.as_str()),
        ];
        let path = if url.path().is_empty() {
            "/"
        } else {
            url.path()
        };
        let auth = sigv4::authorization(&sigv4::Request {
            method: "POST",
            path,
            query: "",
            headers: &headers,
            payload: body.as_bytes(),
            access_key: &self.access_key,
            secret_key: self.secret_key.expose(),
            region: &self.region,
            service: "sns",
            amz_date: &amz_date,
        });
        let (status, text) = exchange(
            self.http
                .post(self.url.as_str())
                .header("content-type", content_type)
                .header("x-amz-date", amz_date)
                .header("authorization", auth)
                .body(body),
        )
        .await?;
        if !(200..300).contains(&status) {
            let code = text
                .split("<Code>")
                .nth(1)
                .and_then(|s| s.split('<').next())
                .unwrap_or("")
                .to_owned();
            return Err(if status >= 500 || status == 429 || code == "Throttling" {
                SendError::Unavailable(format!("HTTP {status} {code}"))
            } else {
                SendError::Rejected {
                    status,
                    detail: code,
                }
            });
        }
        let id = text
            .split("<MessageId>")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .map(str::to_owned);
        // SNS reports no delivery without CloudWatch logs: "sent" is the most it says.
        Ok(Accepted {
            remote_id: id,
            state: RemoteState::Sent,
        })
    }
}
