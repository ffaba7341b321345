//! CSV as spreadsheets read it: RFC 4180 quoting (a cell with a comma, a quote or a
//! line break is quoted, its quotes doubled; lines end in CRLF), and no formulas. A
//! buyer chooses their own name and address, and a cell starting with `=`, `+`, `-`,
//! `@`, a tab or a carriage return is run as a formula by Excel, LibreOffice and
//! Sheets when an operator opens the export (OWASP "CSV injection"): such a cell gets a
//! leading `'`, which they show as text.

/// Appends one line of `cells` to `out`.
pub fn line<S: AsRef<str>>(out: &mut String, cells: &[S]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_cell(out, cell.as_ref());
    }
    out.push_str("\r\n");
}

fn push_cell(out: &mut String, cell: &str) {
    let formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quoted = formula || cell.contains([',', '"', '\r', '\n']);
    if quoted {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in cell.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quoted {
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::line;

    fn one(cells: &[&str]) -> String {
        let mut out = String::new();
        line(&mut out, cells);
        out
    }

    #[test]
    fn cells_are_quoted_as_rfc_4180_says() {
        assert_eq!(one(&["a", "b c"]), "a,b c\r\n");
        assert_eq!(
            one(&["a,b", "say \"hi\""]),
            "\"a,b\",\"say \"\"hi\"\"\"\r\n"
        );
        assert_eq!(one(&["two\nlines", ""]), "\"two\nlines\",\r\n");
    }

    #[test]
    fn a_cell_a_spreadsheet_would_run_as_a_formula_is_text() {
        assert_eq!(
            one(&["=HYPERLINK(\"x\")"]),
            "\"'=HYPERLINK(\"\"x\"\")\"\r\n"
        );
        for bad in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            let out = one(&[bad]);
            assert!(out.starts_with("\"'"), "{bad:?} → {out:?}");
        }
        assert_eq!(one(&["a=b"]), "a=b\r\n");
    }
}
