//! Static bearer tokens from a file in Kubernetes' `--token-auth-file`
//! format: one CSV record per line, `token,user,uid` and optionally a
//! fourth column of groups (`"group1,group2"`, quoted since it holds
//! commas). The file is read once at start; a malformed one refuses
//! start-up naming the file and the line, since a silently skipped line
//! would lock its user out with no hint why.

use std::collections::HashMap;
use std::path::Path;

use super::AuthnError;
use crate::http::auth::UserInfo;

/// The users of a token file, by token.
#[derive(Debug, Default)]
pub struct TokenFile {
    users: HashMap<String, UserInfo>,
}

impl TokenFile {
    /// Read and parse `path`.
    pub fn load(path: &Path) -> Result<TokenFile, AuthnError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthnError::ReadTokenFile {
            file: path.display().to_string(),
            source,
        })?;
        TokenFile::parse(&text).map_err(|(line, reason)| AuthnError::TokenFile {
            file: path.display().to_string(),
            line,
            reason,
        })
    }

    /// Parse the file's text; an error is the line number and the reason.
    pub fn parse(text: &str) -> Result<TokenFile, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            // Blank lines are skipped, as Go's CSV reader (which Kubernetes uses) skips them.
            if line.trim().is_empty() {
                continue;
            }
            let fields = csv_record(line).map_err(|e| (n, e))?;
            if fields.len() < 3 {
                return Err((
                    n,
                    format!(
                        "expected at least 3 columns (token, user name, user uid), found {}",
                        fields.len()
                    ),
                ));
            }
            let token = fields[0].trim();
            if token.is_empty() {
                return Err((n, "the token is empty".into()));
            }
            if fields[1].is_empty() {
                return Err((n, "the user name is empty".into()));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let user = UserInfo {
                name: fields[1].clone(),
                uid: fields[2].clone(),
                groups,
                ..UserInfo::default()
            };
            if users.insert(token.to_string(), user).is_some() {
                return Err((n, "the token is a duplicate of an earlier line's".into()));
            }
        }
        Ok(TokenFile { users })
    }

    /// The user of `token`, if the file names it.
    pub fn user(&self, token: &str) -> Option<&UserInfo> {
        self.users.get(token)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// The fields of one CSV line (RFC 4180 quoting: a quoted field may hold
/// commas, `""` is a quote). A quoted field spanning lines is refused.
fn csv_record(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("a quoted field is not closed on its line".into()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a quote inside an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_users_uids_and_groups() {
        let f = TokenFile::parse(
            "t1,alice,u-1,\"dev,ops\"\n\n t2 ,bob,u-2\nt3,carol,u-3,solo\nt4,\"d,\"\"q\"\"\",u-4,\"\"\n",
        )
        .unwrap();
        assert_eq!(f.len(), 4);
        let alice = f.user("t1").unwrap();
        assert_eq!((alice.name.as_str(), alice.uid.as_str()), ("alice", "u-1"));
        assert_eq!(alice.groups, ["dev", "ops"]);
        assert!(f.user("t2").unwrap().groups.is_empty());
        assert_eq!(f.user("t3").unwrap().groups, ["solo"]);
        assert_eq!(f.user("t4").unwrap().name, "d,\"q\"");
        assert!(f.user("t5").is_none());
        assert!(f.user("").is_none());
    }

    #[test]
    fn a_malformed_line_is_named() {
        let line = |text: &str| TokenFile::parse(text).unwrap_err().0;
        assert_eq!(line("t1,alice,u1\nt2,bob\n"), 2);
        assert_eq!(line("t1,alice,u1\n\nt2,\"bob,u2\n"), 3);
        assert_eq!(line(",alice,u1\n"), 1);
        assert_eq!(line("t1,,u1\n"), 1);
        assert_eq!(line("t1,alice,u1\nt1,bob,u2\n"), 2);
        assert_eq!(line("t1,al\"ice,u1\n"), 1);
        assert_eq!(line("t1,\"alice\"x,u1\n"), 1);
    }

    #[test]
    fn load_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(&path, "good,alice,1\nbad\n").unwrap();
        let msg = TokenFile::load(&path).unwrap_err().to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("line 2:"),
            "{msg}"
        );
        let missing = TokenFile::load(&dir.path().join("none")).unwrap_err();
        assert!(missing.to_string().contains("none"), "{missing}");
    }
}
