//! User and group names, looked up in the app's own `/etc/passwd` and
//! `/etc/group` (appc: names are the image's, never the host's). Pure
//! parsing, so it is tested without a rootfs.

/// An app's `user`: a number is taken as is; a name must be in `passwd`.
/// Returns the uid and the user's primary gid (when found by name).
pub fn resolve_user(user: &str, passwd: Option<&str>) -> Result<(u32, Option<u32>), String> {
    let user = if user.is_empty() { "0" } else { user };
    if let Ok(n) = user.parse::<u32>() {
        let primary = passwd.and_then(|p| {
            entries(p)
                .find(|f| f.get(2).and_then(|s| s.parse::<u32>().ok()) == Some(n))
                .and_then(|f| f.get(3)?.parse().ok())
        });
        return Ok((n, primary));
    }
    let Some(passwd) = passwd else {
        return Err(format!(
            "user {user:?} cannot be resolved: the image has no /etc/passwd"
        ));
    };
    for f in entries(passwd) {
        if f.first() == Some(&user) {
            let uid = f.get(2).and_then(|s| s.parse().ok());
            let gid = f.get(3).and_then(|s| s.parse().ok());
            return match uid {
                Some(uid) => Ok((uid, gid)),
                None => Err(format!("user {user:?} has a malformed /etc/passwd entry")),
            };
        }
    }
    Err(format!("user {user:?} is not in the image's /etc/passwd"))
}

/// An app's `group`: a number, or a name in `group`. Empty means the
/// user's primary group (or 0).
pub fn resolve_group(
    group: &str,
    group_file: Option<&str>,
    primary: Option<u32>,
) -> Result<u32, String> {
    if group.is_empty() {
        return Ok(primary.unwrap_or(0));
    }
    if let Ok(n) = group.parse::<u32>() {
        return Ok(n);
    }
    let Some(text) = group_file else {
        return Err(format!(
            "group {group:?} cannot be resolved: the image has no /etc/group"
        ));
    };
    for f in entries(text) {
        if f.first() == Some(&group) {
            return f
                .get(2)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("group {group:?} has a malformed /etc/group entry"));
        }
    }
    Err(format!("group {group:?} is not in the image's /etc/group"))
}

/// The colon-separated fields of each non-comment line.
fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\n# comment\nappuser:x:1000:1001::/home/a:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nappgroup:x:1001:appuser\nother:x:2000:\n";

    #[test]
    fn numbers_need_no_files() {
        assert_eq!(resolve_user("123", None), Ok((123, None)));
        assert_eq!(resolve_group("456", None, None), Ok(456));
        assert_eq!(resolve_user("1000", Some(PASSWD)), Ok((1000, Some(1001))));
    }

    #[test]
    fn names_come_from_the_image_files() {
        assert_eq!(
            resolve_user("appuser", Some(PASSWD)),
            Ok((1000, Some(1001)))
        );
        assert_eq!(resolve_group("other", Some(GROUP), None), Ok(2000));
        assert_eq!(resolve_group("", Some(GROUP), Some(1001)), Ok(1001));
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let e = resolve_user("nobody", Some(PASSWD)).unwrap_err();
        assert!(e.contains("\"nobody\"") && e.contains("/etc/passwd"), "{e}");
        let e = resolve_group("staff", Some(GROUP), None).unwrap_err();
        assert!(e.contains("\"staff\"") && e.contains("/etc/group"), "{e}");
        assert!(resolve_user("x", None)
            .unwrap_err()
            .contains("no /etc/passwd"));
    }
}
