//! Job tokens for the egress proxy a cluster shares (`creel egress-proxy`): a job's pod holds
//! a token instead of the API key; the proxy admits a request only with a valid token and
//! adds the real key. A token is `JOB.EXPIRY.MAC`: the job's id, when the token stops being
//! good (unix seconds), and an HMAC-SHA256 of both under the signing key the front ends and the
//! proxy share (the cluster's Secret `creel-egress`, key `signing-key`). So the proxy needs no
//! list of jobs and no access to the API server, and a token is good for one job until its
//! expiry only.

use ring::hmac;

/// What is signed, before the job id and expiry.
const CONTEXT: &str = "creel-job-token:v1";

/// The shortest signing key accepted (bytes).
pub const MIN_KEY: usize = 32;

/// The signing key, for minting (front ends) and checking (the proxy) tokens.
pub struct JobTokens {
    key: hmac::Key,
}

impl std::fmt::Debug for JobTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobTokens(<key>)")
    }
}

impl JobTokens {
    /// Tokens signed with `key` (its surrounding whitespace ignored: a key file's newline).
    pub fn new(key: &[u8]) -> Result<JobTokens, String> {
        let key = key.trim_ascii();
        if key.len() < MIN_KEY {
            return Err(format!(
                "the signing key is {} bytes; at least {MIN_KEY} are needed",
                key.len()
            ));
        }
        Ok(JobTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        })
    }

    fn message(job: &str, expiry: u64) -> String {
        format!("{CONTEXT}:{job}:{expiry}")
    }

    /// A token for job `job`, good until `expiry` (unix seconds).
    pub fn mint(&self, job: &str, expiry: u64) -> String {
        let tag = hmac::sign(&self.key, Self::message(job, expiry).as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{job}.{expiry}.{hex}")
    }

    /// The job a token was minted for, if it is genuine and good at `now` (unix seconds).
    pub fn check(&self, token: &str, now: u64) -> Result<String, String> {
        let mut parts = token.trim().splitn(3, '.');
        let (Some(job), Some(expiry), Some(hex)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("not a job token".into());
        };
        if !crate::job::looks_like_job_id(job) {
            return Err("not a job token".into());
        }
        let Ok(expiry) = expiry.parse::<u64>() else {
            return Err("not a job token".into());
        };
        let Some(tag) = unhex(hex) else {
            return Err("not a job token".into());
        };
        hmac::verify(&self.key, Self::message(job, expiry).as_bytes(), &tag)
            .map_err(|_| "the token's signature is not the proxy's".to_string())?;
        if now > expiry {
            return Err(format!("job {job}'s token has expired"));
        }
        Ok(job.to_string())
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_for_its_job_until_its_expiry_and_under_its_key_only() {
        let t = JobTokens::new(&[7u8; 32]).unwrap();
        let token = t.mint("0123456789ab", 1000);
        assert_eq!(t.check(&token, 999).unwrap(), "0123456789ab");
        assert_eq!(t.check(&token, 1000).unwrap(), "0123456789ab");
        assert!(t.check(&token, 1001).unwrap_err().contains("expired"));
        // Another job's id, a later expiry, another key: refused.
        let forged = token.replacen("0123456789ab", "0123456789ac", 1);
        assert!(t.check(&forged, 0).is_err());
        let later = token.replacen(".1000.", ".9999.", 1);
        assert!(t.check(&later, 0).is_err());
        let other = JobTokens::new(&[8u8; 32]).unwrap();
        assert!(other.check(&token, 0).is_err());
        for junk in [
            "",
            "x",
            "a.b.c",
            "0123456789ab.1000.zz",
            &token[..token.len() - 1],
        ] {
            assert!(t.check(junk, 0).is_err(), "{junk}");
        }
        assert!(JobTokens::new(b"short\n").is_err());
    }
}
