//! Command lines read the way the program itself reads them, so the policy judges what the
//! program will do, not what the argv looks like: GNU `getopt_long` (PostgreSQL's tools),
//! MariaDB's `my_getopt`, Go's `pflag` (etcdctl) and redis-cli's own loop.
//!
//! Only options in the table are understood; anything else is refused rather than guessed
//! at, and long options must be written in full (the programs accept unambiguous prefixes,
//! which would let `--fil` stand for a `--file` the table forbids).

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    No,
    /// `--opt=V`, `--opt V`, `-oV`, `-o V`.
    Required,
    /// Only attached: `--opt=V`, `-oV`.
    Optional,
}

/// One option a program knows, with what coffer allows of it.
pub struct Opt {
    pub long: &'static str,
    pub short: Option<char>,
    pub arg: Arg,
    pub rule: Rule,
}

/// What the policy does with an option.
#[derive(Clone, Copy)]
pub enum Rule {
    Allow,
    /// Refused, with why (what it would let a plugin do).
    Deny(&'static str),
    /// The value is checked.
    Check(fn(&str, &super::Input) -> Result<(), String>),
    /// A server endpoint: it must be the one the Workload's env pins (see `super::pin`).
    Pin(&'static str),
}

/// How a program reads its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// glibc `getopt_long`: bundled short options, options anywhere (permuted), `--` ends.
    Gnu,
    /// MariaDB `my_getopt`: like Gnu for what coffer allows.
    MyGetopt,
    /// spf13/pflag: like Gnu, plus `-o=V` and `--bool=true|false`.
    Pflag,
    /// redis-cli: options first, each written whole; the first other word starts the command.
    Leading,
}

/// One element of a parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Opt {
        /// The option's long name in the table.
        name: &'static str,
        value: Option<String>,
    },
    Positional(String),
}

impl Opt {
    pub const fn new(long: &'static str, short: Option<char>, arg: Arg, rule: Rule) -> Opt {
        Opt {
            long,
            short,
            arg,
            rule,
        }
    }
}

/// Parse `args` (argv without the program) against `opts`.
pub fn parse(
    syntax: Syntax,
    tables: &[&'static [Opt]],
    args: &[String],
) -> Result<Vec<Item>, String> {
    let opts = || tables.iter().flat_map(|t| t.iter());
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if a == "--" && syntax != Syntax::Leading {
            out.extend(args[i..].iter().cloned().map(Item::Positional));
            break;
        }
        if let Some(body) = a.strip_prefix("--").filter(|b| !b.is_empty()) {
            let (name, attached) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let opt = opts().find(|o| o.long == name).ok_or_else(|| {
                if opts().any(|o| o.long.starts_with(name)) {
                    format!("option --{name}: write options in full")
                } else {
                    format!("option --{name} is not one coffer knows")
                }
            })?;
            let value = match (opt.arg, attached) {
                (Arg::No, Some(v))
                    if syntax == Syntax::Pflag && matches!(v.as_str(), "true" | "false") =>
                {
                    Some(v)
                }
                (Arg::No, Some(_)) => return Err(format!("option --{name} takes no value")),
                (Arg::No, None) => None,
                (Arg::Optional, v) => v,
                (Arg::Required, Some(v)) => Some(v),
                (Arg::Required, None) => Some(next_value(args, &mut i, name)?),
            };
            out.push(Item::Opt {
                name: opt.long,
                value,
            });
            continue;
        }
        if a.len() > 1 && a.starts_with('-') && !(syntax == Syntax::Leading && a.starts_with("--"))
        {
            if syntax == Syntax::Leading {
                // redis-cli: `-h` is a whole word, never a bundle.
                let opt = opts()
                    .find(|o| o.short.is_some_and(|c| a == format!("-{c}")))
                    .ok_or_else(|| format!("option {a} is not one coffer knows"))?;
                let value = match opt.arg {
                    Arg::No => None,
                    _ => Some(next_value(args, &mut i, opt.long)?),
                };
                out.push(Item::Opt {
                    name: opt.long,
                    value,
                });
                continue;
            }
            let chars: Vec<char> = a[1..].chars().collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                k += 1;
                let opt = opts()
                    .find(|o| o.short == Some(c))
                    .ok_or_else(|| format!("option -{c} is not one coffer knows"))?;
                let rest: String = chars[k..].iter().collect();
                let value = match opt.arg {
                    Arg::No => {
                        if syntax == Syntax::Pflag && rest.starts_with('=') {
                            return Err(format!("option -{c} takes no value"));
                        }
                        None
                    }
                    Arg::Optional => {
                        k = chars.len();
                        (!rest.is_empty()).then_some(rest)
                    }
                    Arg::Required => {
                        k = chars.len();
                        if rest.is_empty() {
                            Some(next_value(args, &mut i, opt.long)?)
                        } else if syntax == Syntax::Pflag {
                            Some(rest.strip_prefix('=').unwrap_or(&rest).to_string())
                        } else {
                            Some(rest)
                        }
                    }
                };
                out.push(Item::Opt {
                    name: opt.long,
                    value,
                });
            }
            continue;
        }
        if syntax == Syntax::Leading {
            out.extend(args[i - 1..].iter().cloned().map(Item::Positional));
            break;
        }
        out.push(Item::Positional(a.to_string()));
    }
    Ok(out)
}

fn next_value(args: &[String], i: &mut usize, name: &str) -> Result<String, String> {
    let v = args
        .get(*i)
        .cloned()
        .ok_or_else(|| format!("option --{name} needs a value"))?;
    *i += 1;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    static OPTS: &[Opt] = &[
        Opt::new("file", Some('f'), Arg::Required, Rule::Allow),
        Opt::new("quiet", Some('q'), Arg::No, Rule::Allow),
        Opt::new("help", Some('?'), Arg::Optional, Rule::Allow),
    ];

    fn p(s: Syntax, a: &[&str]) -> Result<Vec<Item>, String> {
        parse(
            s,
            &[OPTS],
            &a.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
        )
    }

    fn file(v: &str) -> Item {
        Item::Opt {
            name: "file",
            value: Some(v.into()),
        }
    }

    #[test]
    fn every_spelling_of_a_value_is_seen() {
        let q = Item::Opt {
            name: "quiet",
            value: None,
        };
        assert_eq!(p(Syntax::Gnu, &["-f", "x"]).unwrap(), [file("x")]);
        assert_eq!(p(Syntax::Gnu, &["-fx"]).unwrap(), [file("x")]);
        assert_eq!(p(Syntax::Gnu, &["-qfx"]).unwrap(), [q.clone(), file("x")]);
        assert_eq!(
            p(Syntax::Gnu, &["-qf", "x"]).unwrap(),
            [q.clone(), file("x")]
        );
        assert_eq!(p(Syntax::Gnu, &["--file=x"]).unwrap(), [file("x")]);
        assert_eq!(p(Syntax::Gnu, &["--file", "x"]).unwrap(), [file("x")]);
        assert_eq!(p(Syntax::Pflag, &["-f=x"]).unwrap(), [file("x")]);
        assert_eq!(p(Syntax::Gnu, &["-f=x"]).unwrap(), [file("=x")]);
        // Options after positionals are options (GNU permutes), but not after `--`.
        assert_eq!(
            p(Syntax::Gnu, &["db", "-fx", "--", "-fy"]).unwrap(),
            [
                Item::Positional("db".into()),
                file("x"),
                Item::Positional("-fy".into())
            ]
        );
        // redis-cli: the first word that is not an option starts the command.
        assert_eq!(
            p(Syntax::Leading, &["-f", "x", "GET", "-q"]).unwrap(),
            [
                file("x"),
                Item::Positional("GET".into()),
                Item::Positional("-q".into())
            ]
        );
        assert!(p(Syntax::Leading, &["-qf", "x"]).is_err());
    }

    #[test]
    fn unknown_abbreviated_and_malformed_options_are_refused() {
        assert!(
            p(Syntax::Gnu, &["--fil=x"])
                .unwrap_err()
                .contains("in full")
        );
        assert!(
            p(Syntax::Gnu, &["--output=x"])
                .unwrap_err()
                .contains("not one")
        );
        assert!(p(Syntax::Gnu, &["-qz"]).unwrap_err().contains("-z"));
        assert!(
            p(Syntax::Gnu, &["-f"])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(p(Syntax::Gnu, &["--quiet=1"]).is_err());
        assert_eq!(
            p(Syntax::Pflag, &["--quiet=true"]).unwrap(),
            [Item::Opt {
                name: "quiet",
                value: Some("true".into())
            }]
        );
        assert_eq!(
            p(Syntax::Gnu, &["-"]).unwrap(),
            [Item::Positional("-".into())]
        );
        assert_eq!(
            p(Syntax::Gnu, &["-?"]).unwrap(),
            [Item::Opt {
                name: "help",
                value: None
            }]
        );
    }
}
