//! Approval rules: `permissions_allow` and `permissions_deny` in the config decide a permission
//! request without asking anyone. The syntax is Claude Code's:
//!
//! - `Edit` matches every use of a tool; `mcp__github__*` every tool whose name starts so.
//! - `Tool(pattern)` matches when the tool's main argument matches `pattern`, where `*` stands
//!   for any text (a trailing `:*`, Claude Code's older prefix form, too): `Bash` → the
//!   command, `Read`/`Edit`/`MultiEdit`/`Write` → `file_path`, `NotebookEdit` →
//!   `notebook_path`, `Glob`/`Grep` → `pattern`, `WebSearch` → `query`, `WebFetch` → the URL,
//!   or with `domain:NAME` its host (NAME or below it).
//!
//! Deny rules win. For `Bash` a command is split at `;`, `&&`, `||`, `|`, `&` and new lines: a
//! deny rule matching any part denies it, and an allow rule approves it only if every part is
//! approved and it has no command or process substitution (`` ` ``, `$(`, `<(`, `>(`), so that `git status; curl …`
//! is not approved by `Bash(git *)`. Anything no rule decides is asked.

/// What makes a shell run a command inside another one's arguments: never approved by a rule.
const SUBSTITUTIONS: [&str; 4] = ["`", "$(", "<(", ">("];

/// The rule that decides a request, if one does: `(allowed, the rule as written)`.
pub(crate) fn decide(
    allow: &[String],
    deny: &[String],
    tool: &str,
    input: &serde_json::Value,
) -> Option<(bool, String)> {
    let subject = subject(tool, input);
    let parts: Vec<&str> = match (tool, subject.as_deref()) {
        ("Bash", Some(cmd)) => split_command(cmd),
        (_, Some(s)) => vec![s],
        (_, None) => vec![],
    };
    for rule in deny {
        if parts.iter().any(|p| matches(rule, tool, Some(p)))
            || (parts.is_empty() && matches(rule, tool, None))
            || subject
                .as_deref()
                .is_some_and(|s| matches(rule, tool, Some(s)))
        {
            return Some((false, rule.clone()));
        }
    }
    if tool == "Bash"
        && let Some(cmd) = &subject
    {
        if SUBSTITUTIONS.iter().any(|s| cmd.contains(s)) || parts.is_empty() {
            return None;
        }
        let mut used = None;
        for p in &parts {
            let r = allow.iter().find(|r| matches(r, tool, Some(p)))?;
            used.get_or_insert_with(|| r.clone());
        }
        return used.map(|r| (true, r));
    }
    allow
        .iter()
        .find(|r| matches(r, tool, subject.as_deref()))
        .map(|r| (true, r.clone()))
}

/// Checks a rule's syntax (for the config).
pub(crate) fn check(rule: &str) -> Result<(), String> {
    let (name, pattern) = split_rule(rule).ok_or_else(|| {
        format!(
            "`{rule}` is not a rule like `Edit`, `Bash(git *)` or `WebFetch(domain:example.com)`"
        )
    })?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-*".contains(c))
    {
        return Err(format!("`{rule}`: `{name}` is not a tool name"));
    }
    if pattern.is_some_and(|p| p.is_empty()) {
        return Err(format!("`{rule}`: an empty pattern (write `{name}` alone)"));
    }
    Ok(())
}

fn split_rule(rule: &str) -> Option<(&str, Option<&str>)> {
    let rule = rule.trim();
    match rule.find('(') {
        None => Some((rule, None)),
        Some(i) => {
            let inner = rule[i + 1..].strip_suffix(')')?;
            Some((&rule[..i], Some(inner)))
        }
    }
}

fn matches(rule: &str, tool: &str, subject: Option<&str>) -> bool {
    let Some((name, pattern)) = split_rule(rule) else {
        return false;
    };
    let name_ok = match name.strip_suffix('*') {
        Some(prefix) => tool.starts_with(prefix),
        None => tool == name,
    };
    if !name_ok {
        return false;
    }
    let Some(pattern) = pattern else {
        return true;
    };
    let Some(subject) = subject else {
        return false;
    };
    if tool == "WebFetch"
        && let Some(domain) = pattern.strip_prefix("domain:")
    {
        let host = url_host(subject);
        return host == domain || host.ends_with(&format!(".{domain}"));
    }
    let pattern = match pattern.strip_suffix(":*") {
        Some(p) => format!("{p}*"),
        None => pattern.to_string(),
    };
    glob(&pattern, subject.trim())
}

/// The argument a rule's pattern is matched against.
fn subject(tool: &str, input: &serde_json::Value) -> Option<String> {
    let key = match tool {
        "Bash" => "command",
        "Read" | "Edit" | "MultiEdit" | "Write" => "file_path",
        "NotebookEdit" => "notebook_path",
        "Glob" | "Grep" => "pattern",
        "WebSearch" => "query",
        "WebFetch" => "url",
        _ => return None,
    };
    input.get(key)?.as_str().map(str::to_string)
}

fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split(':').next().unwrap_or("");
    host.to_ascii_lowercase()
}

/// The simple commands of a shell command line (split at its control operators; quotes are
/// not interpreted, which only ever splits more).
fn split_command(cmd: &str) -> Vec<&str> {
    cmd.split(['\n', ';', '&', '|'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// `*` matches any text; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_issue_s_example() {
        let allow = rules(&["Bash(git *)", "Edit"]);
        let deny = rules(&["Bash(curl *)"]);
        let bash = |c: &str| decide(&allow, &deny, "Bash", &json!({ "command": c }));
        assert_eq!(bash("git status"), Some((true, "Bash(git *)".into())));
        assert_eq!(
            bash("git add . && git commit -m x"),
            Some((true, "Bash(git *)".into()))
        );
        assert_eq!(bash("curl https://x"), Some((false, "Bash(curl *)".into())));
        assert_eq!(
            bash("git status; curl https://x"),
            Some((false, "Bash(curl *)".into()))
        );
        assert_eq!(
            bash("git status; rm -rf /"),
            None,
            "one part is not approved"
        );
        assert_eq!(
            bash("git log $(rm -rf /)"),
            None,
            "substitution is never approved"
        );
        assert_eq!(bash("gitx"), None);
        assert_eq!(
            bash("git diff <(curl -s x)"),
            None,
            "process substitution is never approved"
        );
        assert_eq!(
            decide(
                &allow,
                &deny,
                "Edit",
                &json!({ "file_path": "/workspace/a" })
            ),
            Some((true, "Edit".into()))
        );
        assert_eq!(
            decide(&allow, &deny, "Write", &json!({ "file_path": "/a" })),
            None
        );
    }

    #[test]
    fn patterns_domains_and_prefixes() {
        let allow = rules(&[
            "Write(/workspace/docs/*)",
            "WebFetch(domain:docs.rs)",
            "mcp__github__*",
            "Bash(npm run test:*)",
        ]);
        let d = |tool: &str, input: serde_json::Value| decide(&allow, &[], tool, &input);
        assert!(d("Write", json!({"file_path": "/workspace/docs/a.md"})).is_some());
        assert!(d("Write", json!({"file_path": "/workspace/src/a.rs"})).is_none());
        assert!(d("WebFetch", json!({"url": "https://docs.rs/x"})).is_some());
        assert!(d("WebFetch", json!({"url": "https://api.docs.rs:443/x"})).is_some());
        assert!(d("WebFetch", json!({"url": "https://evildocs.rs/x"})).is_none());
        assert!(d("WebFetch", json!({"url": "https://docs.rs@evil.example/x"})).is_none());
        assert!(d("mcp__github__create_issue", json!({})).is_some());
        assert!(d("Bash", json!({"command": "npm run test:unit"})).is_some());
        assert!(d("Bash", json!({"command": "npm run build"})).is_none());
        assert!(
            d("Bash", json!({})).is_none(),
            "no command, nothing to approve"
        );
    }

    #[test]
    fn bad_rules_are_named() {
        assert!(check("Bash(git *)").is_ok());
        assert!(check("mcp__x__*").is_ok());
        for bad in ["", "Bash(", "Bash()", "rm -rf"] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn glob_is_anchored() {
        assert!(glob("a*c", "abc"));
        assert!(glob("a*", "a"));
        assert!(!glob("a*c", "abcd"));
        assert!(glob("*b*", "abc"));
        assert!(!glob("ab*ba", "aba"));
    }
}
