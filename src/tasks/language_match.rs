//! A caller's language code matched to one of the model's own: exactly, then without the
//! family's wrapping (`__fr__`, `>>fra<<`), then by language through ISO 639 (`fr`, `fra`, `fre`
//! all find `fra_Latn` or `fr_XX`), with the script or region deciding between several.

use crate::error::{Error, Result};

/// ISO 639-1 code, then the ISO 639-3 / 639-2 codes of the same language (individual languages
/// NLLB uses for macrolanguages included: `arb` for Arabic, `pes` for Persian, `zsm` for Malay).
static ISO_639: &[(&str, &[&str])] = &[
    ("af", &["afr"]),
    ("am", &["amh"]),
    ("ar", &["ara", "arb"]),
    ("az", &["aze", "azj"]),
    ("be", &["bel"]),
    ("bg", &["bul"]),
    ("bn", &["ben"]),
    ("bs", &["bos"]),
    ("ca", &["cat"]),
    ("cs", &["ces", "cze"]),
    ("cy", &["cym", "wel"]),
    ("da", &["dan"]),
    ("de", &["deu", "ger"]),
    ("el", &["ell", "gre"]),
    ("en", &["eng"]),
    ("eo", &["epo"]),
    ("es", &["spa"]),
    ("et", &["est", "ekk"]),
    ("eu", &["eus", "baq"]),
    ("fa", &["fas", "per", "pes"]),
    ("fi", &["fin"]),
    ("fr", &["fra", "fre"]),
    ("ga", &["gle"]),
    ("gl", &["glg"]),
    ("gu", &["guj"]),
    ("ha", &["hau"]),
    ("he", &["heb"]),
    ("hi", &["hin"]),
    ("hr", &["hrv"]),
    ("hu", &["hun"]),
    ("hy", &["hye", "arm"]),
    ("id", &["ind"]),
    ("ig", &["ibo"]),
    ("is", &["isl", "ice"]),
    ("it", &["ita"]),
    ("ja", &["jpn"]),
    ("jv", &["jav"]),
    ("ka", &["kat", "geo"]),
    ("kk", &["kaz"]),
    ("km", &["khm"]),
    ("kn", &["kan"]),
    ("ko", &["kor"]),
    ("ky", &["kir"]),
    ("lo", &["lao"]),
    ("lt", &["lit"]),
    ("lv", &["lav", "lvs"]),
    ("mk", &["mkd", "mac"]),
    ("ml", &["mal"]),
    ("mn", &["mon", "khk"]),
    ("mr", &["mar"]),
    ("ms", &["msa", "may", "zsm"]),
    ("my", &["mya", "bur"]),
    ("ne", &["nep", "npi"]),
    ("nl", &["nld", "dut"]),
    ("no", &["nor", "nob"]),
    ("pa", &["pan"]),
    ("pl", &["pol"]),
    ("ps", &["pus", "pbt"]),
    ("pt", &["por"]),
    ("ro", &["ron", "rum"]),
    ("ru", &["rus"]),
    ("si", &["sin"]),
    ("sk", &["slk", "slo"]),
    ("sl", &["slv"]),
    ("so", &["som"]),
    ("sq", &["sqi", "alb", "als"]),
    ("sr", &["srp"]),
    ("sv", &["swe"]),
    ("sw", &["swa", "swh"]),
    ("ta", &["tam"]),
    ("te", &["tel"]),
    ("th", &["tha"]),
    ("tl", &["tgl"]),
    ("tr", &["tur"]),
    ("uk", &["ukr"]),
    ("ur", &["urd"]),
    ("uz", &["uzb", "uzn"]),
    ("vi", &["vie"]),
    ("xh", &["xho"]),
    ("yo", &["yor"]),
    ("zh", &["zho", "chi"]),
    ("zu", &["zul"]),
];

/// `__fr__` → `fr`, `>>fra<<` → `fra`; other codes as they are.
pub fn bare(code: &str) -> &str {
    let unwrap = |open: &str, close: &str| code.strip_prefix(open).and_then(|r| r.strip_suffix(close));
    unwrap("__", "__").or_else(|| unwrap(">>", "<<")).unwrap_or(code)
}

/// Language and the rest: `fra_Latn` → (`fra`, `latn`), `zh-CN` → (`zh`, `cn`), `fr` → (`fr`, ``).
fn parts(code: &str) -> (String, String) {
    let b = bare(code);
    let (lang, rest) = b.split_once(['_', '-']).unwrap_or((b, ""));
    (lang.to_ascii_lowercase(), rest.to_ascii_lowercase())
}

/// Every ISO 639 spelling of `lang`'s language (itself included).
fn same_language(lang: &str) -> Vec<&str> {
    match ISO_639.iter().find(|(two, threes)| *two == lang || threes.contains(&lang)) {
        Some((two, threes)) => std::iter::once(*two).chain(threes.iter().copied()).collect(),
        None => vec![lang],
    }
}

/// Index in `known` of the code `asked` names; `what` ("target", "source") for the error.
pub fn match_code(asked: &str, known: &[&str], what: &str) -> Result<usize> {
    let asked = asked.trim();
    if let Some(i) = known.iter().position(|k| *k == asked) {
        return Ok(i);
    }
    let bare_asked = bare(asked);
    let same: Vec<usize> = (0..known.len()).filter(|&i| bare(known[i]).eq_ignore_ascii_case(bare_asked)).collect();
    if let [i] = same[..] {
        return Ok(i);
    }
    let (lang, rest) = parts(asked);
    let spellings = same_language(&lang);
    let mut candidates: Vec<usize> = (0..known.len()).filter(|&i| spellings.contains(&parts(known[i]).0.as_str())).collect();
    if candidates.len() > 1 && !rest.is_empty() {
        let narrowed: Vec<usize> = candidates.iter().copied().filter(|&i| parts(known[i]).1 == rest).collect();
        if !narrowed.is_empty() {
            candidates = narrowed;
        }
    }
    match candidates[..] {
        [i] => Ok(i),
        [] => Err(Error::UnknownLanguage {
            code: asked.to_string(),
            reason: format!("not a {what} language of this model; it knows {}", known.join(", ")),
        }),
        _ => Err(Error::UnknownLanguage {
            code: asked.to_string(),
            reason: format!(
                "ambiguous {what} language: it could be {}; name one",
                candidates.iter().map(|&i| known[i]).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

/// Whether `a` and `b` name the same language (for a one-pair model's pair).
pub fn same_code(a: &str, b: &str) -> bool {
    match_code(a, &[b], "").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NLLB: &[&str] = &["eng_Latn", "fra_Latn", "zho_Hans", "zho_Hant", "arb_Arab", "acm_Arab"];
    const MBART: &[&str] = &["en_XX", "fr_XX", "zh_CN", "pt_XX"];
    const M2M: &[&str] = &["__en__", "__fr__", "__zh__"];
    const MARIAN: &[&str] = &[">>fra<<", ">>por<<", ">>zho_Hans<<"];

    fn pick<'a>(asked: &str, known: &[&'a str]) -> std::result::Result<&'a str, String> {
        match_code(asked, known, "target").map(|i| known[i]).map_err(|e| e.to_string())
    }

    #[test]
    fn codes_of_every_family_resolve_from_the_usual_spellings() {
        assert_eq!(pick("fra_Latn", NLLB), Ok("fra_Latn"));
        assert_eq!(pick("fr", NLLB), Ok("fra_Latn"));
        assert_eq!(pick("fre", NLLB), Ok("fra_Latn"));
        assert_eq!(pick("ar", NLLB), Ok("arb_Arab"));
        assert_eq!(pick("fr", MBART), Ok("fr_XX"));
        assert_eq!(pick("fra_Latn", MBART), Ok("fr_XX"));
        assert_eq!(pick("zh", MBART), Ok("zh_CN"));
        assert_eq!(pick("fr", M2M), Ok("__fr__"));
        assert_eq!(pick("__zh__", M2M), Ok("__zh__"));
        assert_eq!(pick("fra", MARIAN), Ok(">>fra<<"));
        assert_eq!(pick(">>por<<", MARIAN), Ok(">>por<<"));
        assert_eq!(pick("pt", MARIAN), Ok(">>por<<"));
        assert_eq!(pick("zh-Hans", NLLB), Ok("zho_Hans"));
        assert_eq!(pick("FR", M2M), Ok("__fr__"));
    }

    #[test]
    fn unknown_and_ambiguous_codes_are_refused_with_the_choices() {
        let e = pick("xx", NLLB).unwrap_err();
        assert!(e.contains("unknown language `xx`") && e.contains("eng_Latn, fra_Latn"), "{e}");
        let e = pick("zh", NLLB).unwrap_err();
        assert!(e.contains("ambiguous") && e.contains("zho_Hans, zho_Hant"), "{e}");
        assert!(pick("de", MBART).is_err());
    }

    #[test]
    fn pairs_compare_by_language() {
        assert!(same_code("de", "deu") && same_code("deu_Latn", "de") && !same_code("fr", "de"));
    }
}
