//! PostgreSQL's values as scripts see them, and scripts' parameters as PostgreSQL reads them.
//!
//! Out (a column to a `Cell`):
//! - `smallint`, `integer`, `bigint`, `oid` -> integer; `real`, `double precision` -> float;
//!   `numeric` -> float (exact digits beyond a float's: cast to `text` in SQL);
//! - `boolean` -> bool; `text`, `varchar`, `char`, `name`, enums, `citext` -> string;
//! - `uuid` -> its usual text; `timestamptz` -> RFC 3339 in UTC (`2026-12-04T10:00:00Z`, as
//!   `now()` gives it); `timestamp` -> `2026-12-04T10:00:00`; `date` -> `2026-12-04`;
//!   `time` -> `10:00:00`;
//! - `json`, `jsonb` -> the map, array or value they hold; arrays -> arrays of these values;
//! - `bytea` -> a blob; any other type is an error that says to cast it (`::text`).
//!
//! In (a parameter): sent as text, so that PostgreSQL reads it as the type the query needs, as it
//! would a literal: `?` compared with an `integer` column takes `42`, with a `uuid` column a
//! string, with a `boolean` column `1` or `true`.

use std::error::Error;

use bytes::BytesMut;
use postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type};
use postgres_protocol::types as wire;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::store::Cell;

type BoxError = Box<dyn Error + Sync + Send>;

/// A column's value as scripts get it.
pub(super) struct ScriptValue(pub Cell);

impl<'a> FromSql<'a> for ScriptValue {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<ScriptValue, BoxError> {
        decode(ty, raw).map(ScriptValue)
    }

    fn from_sql_null(_: &Type) -> Result<ScriptValue, BoxError> {
        Ok(ScriptValue(Cell::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn decode(ty: &Type, raw: &[u8]) -> Result<Cell, BoxError> {
    Ok(match *ty {
        Type::BOOL => Cell::Bool(wire::bool_from_sql(raw)?),
        Type::INT2 => Cell::Integer(wire::int2_from_sql(raw)?.into()),
        Type::INT4 => Cell::Integer(wire::int4_from_sql(raw)?.into()),
        Type::INT8 => Cell::Integer(wire::int8_from_sql(raw)?),
        Type::OID => Cell::Integer(wire::oid_from_sql(raw)?.into()),
        Type::FLOAT4 => Cell::Real(wire::float4_from_sql(raw)?.into()),
        Type::FLOAT8 => Cell::Real(wire::float8_from_sql(raw)?),
        Type::NUMERIC => Cell::Real(numeric_text(raw)?.parse::<f64>()?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            Cell::Text(wire::text_from_sql(raw)?.to_owned())
        }
        Type::JSON => Cell::Json(serde_json::from_slice(raw)?),
        Type::JSONB => match raw.split_first() {
            Some((1, json)) => Cell::Json(serde_json::from_slice(json)?),
            _ => return Err("jsonb of an unknown version".into()),
        },
        Type::UUID => Cell::Text(uuid::Uuid::from_bytes(wire::uuid_from_sql(raw)?).to_string()),
        Type::TIMESTAMPTZ => Cell::Text(timestamp(wire::timestamp_from_sql(raw)?, true)?),
        Type::TIMESTAMP => Cell::Text(timestamp(wire::timestamp_from_sql(raw)?, false)?),
        Type::DATE => Cell::Text(date(wire::date_from_sql(raw)?)?),
        Type::TIME => Cell::Text(time_of_day(wire::time_from_sql(raw)?)?),
        Type::BYTEA => Cell::Blob(wire::bytea_from_sql(raw).to_vec()),
        _ => match ty.kind() {
            Kind::Enum(_) => Cell::Text(wire::text_from_sql(raw)?.to_owned()),
            Kind::Domain(base) => decode(base, raw)?,
            Kind::Array(element) => {
                let array = wire::array_from_sql(raw)?;
                let mut values = Vec::new();
                let mut elements = array.values();
                while let Some(value) =
                    postgres::fallible_iterator::FallibleIterator::next(&mut elements)?
                {
                    values.push(match value {
                        None => serde_json::Value::Null,
                        Some(raw) => to_json(decode(element, raw)?),
                    });
                }
                Cell::Json(serde_json::Value::Array(values))
            }
            // citext and other extension types whose binary form is their text.
            _ if ty.name() == "citext" => Cell::Text(wire::text_from_sql(raw)?.to_owned()),
            _ => {
                return Err(format!(
                    "scripts cannot read PostgreSQL's type {}; cast the column to text in SQL \
                     (column::text)",
                    ty.name()
                )
                .into())
            }
        },
    })
}

/// A value inside an array or JSON, as JSON.
fn to_json(cell: Cell) -> serde_json::Value {
    match cell {
        Cell::Null => serde_json::Value::Null,
        Cell::Integer(n) => n.into(),
        Cell::Real(x) => {
            serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, Into::into)
        }
        Cell::Text(t) => t.into(),
        Cell::Blob(b) => b
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
            .into(),
        Cell::Bool(b) => b.into(),
        Cell::Json(value) => value,
    }
}

/// PostgreSQL's binary `numeric` as decimal text: a sign, base-10000 digits and the position of
/// the first, and how many decimals to show.
fn numeric_text(raw: &[u8]) -> Result<String, BoxError> {
    let word = |i: usize| -> Result<i16, BoxError> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a numeric value is cut short".into())
    };
    let digits = word(0)? as usize;
    let weight = word(1)? as i32;
    let sign = word(2)? as u16;
    let scale = word(3)? as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("inf".into()),
        0xF000 => return Ok("-inf".into()),
        _ => {}
    }
    let mut integer = String::new();
    let mut fraction = String::new();
    for i in 0..digits {
        let group = format!("{:04}", word(4 + i)?);
        let position = weight - i as i32;
        if position >= 0 {
            integer.push_str(&group);
        } else {
            if fraction.is_empty() {
                for _ in 0..(-position - 1) {
                    fraction.push_str("0000");
                }
            }
            fraction.push_str(&group);
        }
    }
    // Groups between the last digit and the decimal point are zeros.
    if digits > 0 && weight >= digits as i32 {
        for _ in 0..(weight - digits as i32 + 1) {
            integer.push_str("0000");
        }
    }
    let integer = integer.trim_start_matches('0');
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    text.push_str(if integer.is_empty() { "0" } else { integer });
    if scale > 0 {
        fraction.truncate(scale);
        while fraction.len() < scale {
            fraction.push('0');
        }
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

/// Microseconds since 2000-01-01 as text: RFC 3339 in UTC, or without a zone.
fn timestamp(micros: i64, utc: bool) -> Result<String, BoxError> {
    const PG_EPOCH_MICROS: i128 = 946_684_800_000_000;
    let nanos = (i128::from(micros) + PG_EPOCH_MICROS) * 1000;
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)?;
    Ok(if utc {
        at.format(&Rfc3339)?
    } else {
        let mut text = at.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))?;
        push_fraction(&mut text, at.nanosecond());
        text
    })
}

/// `.5` for half a second; nothing for a whole one.
fn push_fraction(text: &mut String, nanos: u32) {
    if nanos > 0 {
        let digits = format!("{nanos:09}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
}

fn date(days: i32) -> Result<String, BoxError> {
    let date = time::Date::from_julian_day(2_451_545 + days)?;
    Ok(date.format(format_description!("[year]-[month]-[day]"))?)
}

fn time_of_day(micros: i64) -> Result<String, BoxError> {
    let time = time::Time::MIDNIGHT + time::Duration::microseconds(micros);
    let mut text = time.format(format_description!("[hour]:[minute]:[second]"))?;
    push_fraction(&mut text, time.nanosecond());
    Ok(text)
}

/// A script's parameter, sent as text for PostgreSQL to read as the type the query needs.
impl ToSql for Cell {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let text = match self {
            Cell::Null => return Ok(IsNull::Yes),
            Cell::Integer(n) => n.to_string(),
            Cell::Real(x) if x.is_nan() => "NaN".into(),
            Cell::Real(x) if x.is_infinite() => {
                if *x > 0.0 { "Infinity" } else { "-Infinity" }.into()
            }
            Cell::Real(x) => x.to_string(),
            Cell::Text(t) => t.clone(),
            Cell::Blob(b) => {
                let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
                format!("\\x{hex}")
            }
            Cell::Bool(b) => b.to_string(),
            Cell::Json(value) => value.to_string(),
        };
        out.extend_from_slice(text.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(digits: &[i16], weight: i16, negative: bool, scale: i16) -> Vec<u8> {
        let mut raw = Vec::new();
        for word in [
            digits.len() as i16,
            weight,
            if negative { 0x4000 } else { 0 },
            scale,
        ] {
            raw.extend_from_slice(&word.to_be_bytes());
        }
        for d in digits {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numerics_read_as_their_decimal_text() {
        assert_eq!(
            numeric_text(&numeric(&[12, 3400], 1, false, 2)).unwrap(),
            "123400.00"
        );
        assert_eq!(
            numeric_text(&numeric(&[25], 1, false, 0)).unwrap(),
            "250000"
        );
        assert_eq!(
            numeric_text(&numeric(&[1, 5000], 0, true, 1)).unwrap(),
            "-1.5"
        );
        assert_eq!(
            numeric_text(&numeric(&[5], -1, false, 4)).unwrap(),
            "0.0005"
        );
        assert_eq!(numeric_text(&numeric(&[], 0, false, 2)).unwrap(), "0.00");
    }

    #[test]
    fn times_read_as_rfc_3339() {
        assert_eq!(timestamp(0, true).unwrap(), "2000-01-01T00:00:00Z");
        assert_eq!(
            timestamp(1_500_000, false).unwrap(),
            "2000-01-01T00:00:01.5"
        );
        assert_eq!(date(-1).unwrap(), "1999-12-31");
        assert_eq!(time_of_day(3_600_000_000).unwrap(), "01:00:00");
    }
}
