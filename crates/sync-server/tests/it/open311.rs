//! Open311 GeoReport v2 (read side) on incidents synced by real devices:
//! services, requests and their filters, one request, errors, photos, and
//! who may read what.

use serde_json::Value;

use crate::exports::{Seeded, get, get_url, seed};

/// The November window, in the community's offset (`+` escaped).
const NOVEMBER: &str = "start_date=2026-11-01T00:00:00%2B08:00&end_date=2026-11-30T23:59:59%2B08:00";

#[track_caller]
fn requests(s: &Seeded, query: &str, token: Option<&str>) -> Vec<Value> {
    let a = get(&s.server, &format!("/open311/v2/requests.json?{query}"), token);
    assert_eq!(a.status, 200, "?{query}: {}", a.text());
    assert_eq!(a.header("content-type"), "application/json; charset=utf-8");
    a.json().as_array().expect("an array of requests").clone()
}

fn ids(requests: &[Value]) -> Vec<&str> {
    requests
        .iter()
        .map(|r| r["service_request_id"].as_str().unwrap())
        .collect()
}

/// An Open311 error: `[{"code": status, "description": …}]`.
#[track_caller]
fn error(s: &Seeded, path: &str, token: Option<&str>, status: u16, needle: &str) {
    let a = get(&s.server, path, token);
    assert_eq!(a.status, status, "{path}: {}", a.text());
    let body = a.json();
    let errors = body
        .as_array()
        .unwrap_or_else(|| panic!("{path}: not an error array: {body}"));
    assert_eq!(errors.len(), 1, "{path}");
    assert_eq!(errors[0]["code"], status, "{path}");
    let description = errors[0]["description"].as_str().unwrap();
    assert!(description.contains(needle), "{path}: {description}");
}

#[test]
fn services_are_the_categories_and_public() {
    let s = seed(&[]);
    let a = get(&s.server, "/open311/v2/services.json", None);
    assert_eq!(a.status, 200);
    let services = a.json();
    let services = services.as_array().unwrap();
    assert_eq!(services.len(), 12);
    let manhole = services.iter().find(|x| x["service_code"] == "manhole-cover").unwrap();
    assert_eq!(manhole["service_name"], "井盖破损 Broken manhole cover");
    assert_eq!(manhole["metadata"], false);
    assert_eq!(manhole["type"], "realtime");
    assert_eq!(manhole["group"], "部件 facility");
    assert!(manhole["keywords"].as_str().unwrap().contains("manhole-cover"));
    assert!(!manhole["description"].as_str().unwrap().is_empty());
    let dispute = services
        .iter()
        .find(|x| x["service_code"] == "neighbor-dispute")
        .unwrap();
    assert_eq!(dispute["group"], "事件 event");
    error(&s, "/open311/v2/services.xml", None, 400, "JSON only");
}

#[test]
fn requests_map_statuses_times_and_filters() {
    let s = seed(&[]);
    let op = Some(s.operator.as_str());
    let all = requests(&s, NOVEMBER, op);
    assert_eq!(ids(&all), [&s.a, &s.b, &s.c, &s.d]);

    let a = &all[0];
    assert_eq!(a["status"], "open");
    assert_eq!(a["status_notes"], "reported (已上报)");
    assert_eq!(a["service_code"], "manhole-cover");
    assert_eq!(a["service_name"], "井盖破损 Broken manhole cover");
    assert_eq!(a["description"], crate::exports::HYPERLINK);
    assert_eq!(a["agency_responsible"], "鹤乡社区 Hexiang Community");
    assert_eq!(a["requested_datetime"], "2026-11-20T09:00:00+08:00");
    assert_eq!(a["lat"], 41.1221);
    assert_eq!(a["long"], 122.0655);
    let address = a["address"].as_str().unwrap();
    assert!(
        address.starts_with("鹤乡路12号, 鹤乡社区第1网格, 鹤乡社区"),
        "{address}"
    );

    // Captured at 23:30 UTC; shown in Shanghai time with its offset.
    let b = &all[1];
    assert_eq!(b["requested_datetime"], "2026-11-21T07:30:00+08:00");
    assert_eq!(b["status"], "closed");
    assert_eq!(b["status_notes"], "resolved (已处置)");
    assert!(
        b["updated_datetime"].as_str().unwrap() > b["requested_datetime"].as_str().unwrap(),
        "the resolution came later: {b}"
    );
    let c = &all[2];
    assert_eq!(
        (c["status"].as_str(), c["status_notes"].as_str()),
        (Some("open"), Some("dispatched (已派遣)"))
    );
    let d = &all[3];
    assert_eq!(d["lat"], Value::Null);
    assert_eq!(d["agency_responsible"], "兴盛村 Xingsheng Village");

    #[rustfmt::skip]
    let cases: &[(&str, &[&String])] = &[
        ("status=open", &[&s.a, &s.c, &s.d]),
        ("status=closed", &[&s.b]),
        ("status=open,closed", &[&s.a, &s.b, &s.c, &s.d]),
        ("service_code=lawn,clutter", &[&s.b, &s.c]),
        ("service_code=lawn&status=open", &[]),
        ("service_code=illegal-parking", &[&s.d]),
    ];
    for (query, want) in cases {
        assert_eq!(
            ids(&requests(&s, &format!("{NOVEMBER}&{query}"), op)),
            *want,
            "?{query}"
        );
    }
    // start_date and end_date compare requested_datetime, whatever the offset.
    let day = "start_date=2026-11-20T16:00:00Z&end_date=2026-11-21T15:59:59Z";
    assert_eq!(ids(&requests(&s, day, op)), [&s.b, &s.d]);
    // An unescaped `+` (a space once decoded) is read as the offset it was.
    let loose = "start_date=2026-11-21T00:00:00+08:00&end_date=2026-11-21T23:59:59+08:00";
    assert_eq!(ids(&requests(&s, loose, op)), [&s.b, &s.d]);
    // service_request_id overrides the other filters.
    let listed = requests(&s, &format!("service_request_id={},{}&status=open", s.b, s.d), op);
    assert_eq!(ids(&listed), [&s.b, &s.d]);

    // With no dates: the last 90 days before now.
    let now = chrono::Utc::now().fixed_offset();
    let recent: Vec<&String> = [
        (&s.a, "2026-11-20T01:00:00Z"),
        (&s.b, "2026-11-20T23:30:00Z"),
        (&s.c, "2026-11-22T02:00:00Z"),
        (&s.d, "2026-11-21T00:00:00Z"),
    ]
    .into_iter()
    .filter(|(_, at)| {
        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
        at <= now && now - at <= chrono::TimeDelta::days(90)
    })
    .map(|(id, _)| id)
    .collect();
    assert_eq!(ids(&requests(&s, "", op)), recent);

    #[rustfmt::skip]
    let bad: &[(&str, &str)] = &[
        ("status=pending", "open or closed"),
        ("service_code=grass", "unknown service_code `grass`"),
        ("start_date=2026-11-01", "w3 date-time"),
        ("start_date=2026-11-20T00:00:00Z&end_date=2026-11-10T00:00:00Z", "before start_date"),
        ("start_date=2026-01-01T00:00:00Z&end_date=2026-11-10T00:00:00Z", "90 days"),
    ];
    for (query, needle) in bad {
        error(&s, &format!("/open311/v2/requests.json?{query}"), op, 400, needle);
    }
    error(&s, "/open311/v2/requests.xml", op, 400, "JSON only");
}

#[test]
fn one_request_by_id_and_404_for_others() {
    let s = seed(&[]);
    let op = Some(s.operator.as_str());
    let a = get(&s.server, &format!("/open311/v2/requests/{}.json", s.c), op);
    assert_eq!(a.status, 200, "{}", a.text());
    let one = a.json();
    let one = one.as_array().expect("an array with one request");
    assert_eq!(ids(one), [&s.c]);
    assert_eq!(one[0]["status_notes"], "dispatched (已派遣)");

    let missing = "0190f5a2-0000-7000-8000-000000000000";
    error(&s, &format!("/open311/v2/requests/{missing}.json"), op, 404, missing);
    error(&s, "/open311/v2/requests/not-an-id.json", op, 404, "no service request");
    error(&s, &format!("/open311/v2/requests/{}.xml", s.c), op, 400, "JSON only");
    // Another community's request does not exist for a center.
    error(
        &s,
        &format!("/open311/v2/requests/{}.json", s.d),
        Some(&s.hx_center),
        404,
        &s.d,
    );
}

#[test]
fn media_url_is_the_verified_display_photo_and_tokens_scope_it() {
    let s = seed(&[]);
    let all = requests(&s, NOVEMBER, Some(&s.operator));
    let signed = all[0]["media_url"].as_str().expect("a's photo was synced whole");
    // The link carries a signature good for an hour, so a client that read
    // the request with its token opens the photo with the link alone.
    let (media, query) = signed.split_once('?').expect("a signed link");
    let prefix = format!("{}/open311/v2/media/", s.server.url);
    assert!(media.starts_with(&prefix) && media.ends_with(".jpg"), "{media}");
    assert!(query.starts_with("expires=") && query.contains("&sig="), "{query}");
    assert!(!signed.contains(&s.operator), "the token is never in a link");
    assert_eq!(get_url(signed, None).status, 200, "the signed link alone");
    let expires: i64 = query["expires=".len()..].split('&').next().unwrap().parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now + 3500..=now + 3600).contains(&expires), "an hour: {expires}");
    let later = signed.replace(&format!("expires={expires}"), &format!("expires={}", expires + 86_400));
    assert_eq!(get_url(&later, None).status, 401, "a lengthened link is refused");
    let tampered = format!("{}0", &signed[..signed.len() - 1]);
    let tampered = if tampered == signed {
        format!("{}1", &signed[..signed.len() - 1])
    } else {
        tampered
    };
    assert_eq!(get_url(&tampered, None).status, 401, "a forged signature is refused");
    assert_eq!(all[1]["media_url"], Value::Null, "b has no photo");
    assert_eq!(all[3]["media_url"], Value::Null, "d's photo never reached the server");

    // The photo, fetched with the token as api_key, is a JPEG display copy.
    let photo = get_url(&format!("{media}?api_key={}", s.operator), None);
    assert_eq!(photo.status, 200);
    assert_eq!(photo.header("content-type"), "image/jpeg");
    let img = image::load_from_memory_with_format(&photo.body, image::ImageFormat::Jpeg).expect("a JPEG");
    assert!(
        img.width().max(img.height()) <= 1600,
        "the display copy, not the original"
    );

    // api_key works for requests too; a center sees only its community.
    let by_key = get(
        &s.server,
        &format!("/open311/v2/requests.json?{NOVEMBER}&api_key={}", s.hx_center),
        None,
    );
    assert_eq!(by_key.status, 200, "{}", by_key.text());
    assert_eq!(ids(by_key.json().as_array().unwrap()), [&s.a, &s.b, &s.c]);
    assert_eq!(ids(&requests(&s, NOVEMBER, Some(&s.xs_center))), [&s.d]);
    assert_eq!(get_url(media, Some(&s.hx_center)).status, 200);
    let outside = get_url(media, Some(&s.xs_center));
    assert_eq!(outside.status, 404, "another community's photo: {}", outside.text());

    // No token, a bad one, a worker's: refused, as Open311 errors.
    let path = format!("/open311/v2/requests.json?{NOVEMBER}");
    error(&s, &path, None, 401, "api_key");
    error(&s, &format!("{path}&api_key=nope"), None, 401, "not valid");
    error(&s, &path, Some(&s.worker), 403, "grid worker");
    assert_eq!(get_url(media, None).status, 401);
    assert_eq!(get_url(media, Some(&s.worker)).status, 403);
    // Only verified display copies and thumbnails: not the original (it
    // keeps the camera's EXIF), not a photo the server does not hold.
    let export = get(&s.server, "/v1/exports/incidents.json", Some(&s.operator)).json();
    let photo_of = |i: usize, kind: &str| export[i]["photos"][0][kind].as_str().unwrap().to_owned();
    assert_eq!(export[0]["id"], s.a.as_str());
    assert!(media.contains(&photo_of(0, "display")));
    let op = Some(s.operator.as_str());
    for hash in [photo_of(0, "original"), photo_of(3, "display"), "not-a-hash".to_owned()] {
        error(&s, &format!("/open311/v2/media/{hash}.jpg"), op, 404, "no such photo");
    }
    // The services list needs nothing.
    assert_eq!(get(&s.server, "/open311/v2/services.json", None).status, 200);
}

#[test]
fn open311_public_needs_no_token_and_public_url_sets_media_urls() {
    let s = seed(&["--open311-public", "--public-url", "https://grid.example.org/sync/"]);
    let all = requests(&s, NOVEMBER, None);
    assert_eq!(ids(&all), [&s.a, &s.b, &s.c, &s.d], "every community, read-only");
    let media = all[0]["media_url"].as_str().unwrap();
    let hash_path = media
        .strip_prefix("https://grid.example.org/sync")
        .unwrap_or_else(|| panic!("media_url on the public URL: {media}"));
    let photo = get(&s.server, hash_path, None);
    assert_eq!(photo.status, 200, "{hash_path}");
    image::load_from_memory(&photo.body).expect("a JPEG");
    let one = get(&s.server, &format!("/open311/v2/requests/{}.json", s.d), None);
    assert_eq!(one.status, 200);
    // Exports stay behind a token.
    assert_eq!(get(&s.server, "/v1/exports/incidents.csv", None).status, 401);
}

/// GET `url` with the token and `If-None-Match: tag`.
fn get_if_changed(url: &str, token: &str, tag: &str) -> u16 {
    let resp = reqwest::blocking::Client::new()
        .get(url)
        .bearer_auth(token)
        .header("if-none-match", tag)
        .send()
        .expect("the server answers");
    resp.status().as_u16()
}

#[test]
fn private_answers_are_not_stored_and_photos_are_asked_for_again_so_a_revocation_holds() {
    let s = seed(&[]);
    let list = get(
        &s.server,
        &format!("/open311/v2/requests.json?{NOVEMBER}"),
        Some(&s.operator),
    );
    assert_eq!(list.header("cache-control"), "no-store");
    for path in [
        "/v1/exports/incidents.json",
        "/v1/reports/daily?date=2026-11-20&community=HLT-CX-HX",
    ] {
        let answer = get(&s.server, path, Some(&s.operator));
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        assert_eq!(answer.header("cache-control"), "no-store", "{path}");
    }
    let all = list.json();
    // Without its signature the link needs a token, which a revocation stops.
    let media = all[0]["media_url"]
        .as_str()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let photo = get_url(&media, Some(&s.operator));
    assert_eq!(photo.header("cache-control"), "private, no-cache");
    let tag = photo.header("etag").to_owned();
    assert!(
        media.contains(tag.trim_matches('"')),
        "the ETag is the photo's hash: {tag}"
    );
    assert_eq!(get_if_changed(&media, &s.operator, &tag), 304);
    assert_eq!(get_if_changed(&media, &s.operator, "\"other\""), 200);
    assert_eq!(
        get_if_changed(&media, "not-a-token", &tag),
        401,
        "a 304 needs a valid token"
    );

    let list: Value = serde_json::from_str(&s.server.admin(&["device", "list", "--json"])).unwrap();
    let op = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["worker"]["id"] == "op")
        .unwrap();
    s.server.admin(&["device", "revoke", op["id"].as_str().unwrap()]);
    assert_eq!(
        get_if_changed(&media, &s.operator, &tag),
        401,
        "revoked: not even a 304"
    );
}
