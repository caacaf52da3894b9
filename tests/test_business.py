"""The businesses file: the documented sample loads, every invalid file names its line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.business import (
    Business,
    BusinessDirectory,
    BusinessFileError,
    load_businesses,
    receptionist_instructions,
)
from prompts import render

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "businesses.toml"
NY = ZoneInfo("America/New_York")
UTC = dt.UTC


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "businesses.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_loads() -> None:
    directory = load_businesses(EXAMPLE)
    assert [b.number for b in directory.businesses] == ["+14155550100", "+13125550142"]
    bay = directory.businesses[0]
    assert bay.name == "Bay Plumbing & Heating"
    assert bay.tz == ZoneInfo("America/Los_Angeles")
    assert bay.on_call_phone == "+14155550199"
    assert bay.warm_transfer is True
    assert bay.greeting.startswith("Thanks for calling Bay Plumbing & Heating.")
    assert bay.salesforce_fields == {"Lead": {"Region__c": "Bay Area"}}
    electric = directory.businesses[1]
    assert electric.greeting == (
        "Thanks for calling Lakeshore Electric. This is the after-hours line; how can I help?"
    )
    assert electric.lead_source == "Phone Call - After Hours"
    assert electric.emergency_lead_source == "Phone Call - Emergency"
    assert directory.default() is None


def test_no_file_gives_the_demo_business() -> None:
    directory = load_businesses(None)
    business = directory.default()
    assert business is not None
    assert business.name == "Demo Home Services"
    assert business.number == "+15005550006"
    assert business.timezone == "America/New_York"
    assert business.services
    # no opening hours: always after-hours
    assert not business.is_open(dt.datetime(2025, 6, 4, 14, 0, tzinfo=NY))


@pytest.mark.parametrize(
    "asked",
    ["+14155550100", "+1 (415) 555-0100", "(415) 555-0100", "415-555-0100", " +14155550100 "],
)
def test_lookup_by_number_normalises(asked: str) -> None:
    directory = load_businesses(EXAMPLE)
    business = directory.by_number(asked)
    assert business is not None and business.name == "Bay Plumbing & Heating"


@pytest.mark.parametrize("asked", ["+14155550101", "anonymous", "", "+44 20 7946 0958"])
def test_lookup_of_unknown_number_is_none(asked: str) -> None:
    assert load_businesses(EXAMPLE).by_number(asked) is None


GOOD = 'number = "+14155550100"\nname = "A"\ntimezone = "America/New_York"\n'

INVALID_FILES = [
    pytest.param("[[business]]\nname = \n", 2, "not valid TOML", id="toml-syntax"),
    pytest.param(
        f'[[business]]\n{GOOD}colour = "red"\n', 5, "unknown key 'colour'", id="unknown-key"
    ),
    pytest.param(
        '[[business]]\nnumber = "+14155550100"\nname = "A"\ntimezone = "Mars/Olympus"\n',
        4,
        "unknown timezone 'Mars/Olympus'",
        id="bad-timezone",
    ),
    pytest.param(
        '[[business]]\nname = "A"\nnumber = "555-0100"\ntimezone = "UTC"\n',
        3,
        "number",
        id="bad-number",
    ),
    pytest.param(
        f'[[business]]\n{GOOD}on_call_phone = "+1 000"\n', 5, "on_call_phone", id="bad-on-call"
    ),
    pytest.param(
        f'[[business]]\n{GOOD}\n[business.opening_hours]\n"mon-fri" = "9 to 5"\n',
        7,
        "opening_hours",
        id="bad-hours",
    ),
    pytest.param(
        f'[[business]]\n{GOOD}opening_hours = {{ "fri-mon" = "09:00-17:00" }}\n',
        5,
        "runs backwards",
        id="backwards-days",
    ),
    pytest.param(
        f'[[business]]\n{GOOD}opening_hours = {{ "mon-fri" = "17:00-09:00" }}\n',
        5,
        "end before they start",
        id="hours-cross-midnight",
    ),
    pytest.param(
        f'[[business]]\n{GOOD}opening_hours = {{ "mon-fri" = "08:00-17:00", "fri" = "" }}\n',
        5,
        "fri is listed twice",
        id="day-twice",
    ),
    pytest.param(
        f"[[business]]\n{GOOD}\n[[business]]\n{GOOD}",
        7,
        "already used on line 1",
        id="duplicate-number",
    ),
    pytest.param(
        '[[business]]\nnumber = "+14155550100"\ntimezone = "UTC"\n',
        1,
        "missing required key 'name'",
        id="missing-name",
    ),
    pytest.param(f'title = "x"\n[[business]]\n{GOOD}', 1, "unknown key 'title'", id="top-key"),
    pytest.param("# nothing here\n", 1, "no [[business]] entries", id="empty"),
    pytest.param(
        f"[[business]]\n{GOOD}warm_transfer = true\n", 1, "on_call_phone", id="transfer-no-phone"
    ),
    pytest.param(
        f"[[business]]\n{GOOD}ring_timeout_seconds = 2\n", 5, "ring_timeout", id="ring-too-short"
    ),
]


@pytest.mark.parametrize(("text", "line", "reason"), INVALID_FILES)
def test_invalid_file_reports_line_and_reason(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BusinessFileError) as caught:
        load_businesses(path)
    assert caught.value.line == line, str(caught.value)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert reason in str(caught.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(BusinessFileError, match="cannot read"):
        load_businesses(tmp_path / "missing.toml")


def test_second_entry_error_points_into_second_entry(tmp_path: Path) -> None:
    text = (
        f"[[business]]\n{GOOD}\n"
        '[[business]]\nnumber = "+13125550142"\nname = "B"\ntimezone = "Bad/Zone"\n'
    )
    with pytest.raises(BusinessFileError) as caught:
        load_businesses(write(tmp_path, text))
    assert caught.value.line == 9


def hours_business(**hours: str) -> Business:
    return Business(
        number="+12125550100",
        name="Hours Test",
        timezone="America/New_York",
        opening_hours={k.replace("_", "-"): v for k, v in hours.items()},
    )


OPEN_CASES = [
    # Wednesday 2025-06-04
    (dt.datetime(2025, 6, 4, 8, 0, tzinfo=NY), True),
    (dt.datetime(2025, 6, 4, 7, 59, tzinfo=NY), False),
    (dt.datetime(2025, 6, 4, 12, 30, tzinfo=NY), False),  # lunch
    (dt.datetime(2025, 6, 4, 16, 59, tzinfo=NY), True),
    (dt.datetime(2025, 6, 4, 17, 0, tzinfo=NY), False),
    # 13:00 UTC is 09:00 in New York (EDT): open, whatever zone the time is given in
    (dt.datetime(2025, 6, 4, 13, 0, tzinfo=UTC), True),
    (dt.datetime(2025, 6, 7, 10, 0, tzinfo=NY), True),  # Saturday morning
    (dt.datetime(2025, 6, 7, 12, 0, tzinfo=NY), False),
    (dt.datetime(2025, 6, 8, 10, 0, tzinfo=NY), False),  # Sunday: absent = closed
    # DST: 2025-03-09 (Sun) spring forward, 2025-11-02 (Sun) fall back; the Mondays after
    (dt.datetime(2025, 3, 10, 12, 30, tzinfo=UTC), True),  # 08:30 EDT
    (dt.datetime(2025, 3, 7, 12, 30, tzinfo=UTC), False),  # 07:30 EST the Friday before
    (dt.datetime(2025, 11, 3, 12, 30, tzinfo=UTC), False),  # 07:30 EST
    (dt.datetime(2025, 10, 31, 12, 30, tzinfo=UTC), True),  # 08:30 EDT
]


@pytest.mark.parametrize(("at", "is_open"), OPEN_CASES)
def test_is_open(at: dt.datetime, is_open: bool) -> None:
    business = hours_business(mon_fri="08:00-12:00, 13:00-17:00", sat="09:00-12:00")
    assert business.is_open(at) is is_open


def test_is_open_until_midnight_and_closed_day() -> None:
    late = hours_business(mon_fri="18:00-24:00", sat="closed", sun="")
    assert late.is_open(dt.datetime(2025, 6, 4, 23, 59, tzinfo=NY))
    assert not late.is_open(dt.datetime(2025, 6, 5, 0, 0, tzinfo=NY))
    assert not late.is_open(dt.datetime(2025, 6, 7, 20, 0, tzinfo=NY))
    assert not late.is_open(dt.datetime(2025, 6, 8, 20, 0, tzinfo=NY))


def test_is_open_needs_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        hours_business().is_open(dt.datetime(2025, 6, 4, 9, 0))


def test_directory_rejects_duplicates_and_default_needs_exactly_one() -> None:
    one = hours_business()
    assert BusinessDirectory([one]).default() is one
    assert BusinessDirectory([]).default() is None
    with pytest.raises(ValueError, match="used by two"):
        BusinessDirectory([one, one])


def test_receptionist_instructions_are_filled_in() -> None:
    directory = load_businesses(EXAMPLE)
    bay = directory.businesses[0]
    text = receptionist_instructions(bay, now=dt.datetime(2025, 1, 15, 5, 30, tzinfo=UTC))
    assert "Bay Plumbing & Heating" in text
    assert "plumbing, water heaters, drain cleaning, furnace repair" in text
    assert "San Francisco and the Peninsula" in text
    assert "Tuesday, January 14, 2025" in text  # 05:30 UTC is still the 14th in California
    assert "connected to the on-call technician" in text
    assert "Mon 07:30-17:00" in text and "Sun closed" in text
    assert "$" not in text
    assert "flag_emergency" in text and "record_caller_details" in text
    # the business's approved answers are given to the model, word for word
    assert '"Do you service tankless water heaters?" → "Yes, we install and service' in text
    assert "estimates are free" in text
    other = receptionist_instructions(directory.businesses[1], now=dt.datetime.now(UTC))
    assert "(none)" in other


def test_faq_and_blocklist_are_checked_at_load(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text(
        '[[business]]\nnumber = "+14155550100"\nname = "B"\ntimezone = "UTC"\n'
        'blocklist = ["not a number"]\n'
    )
    with pytest.raises(BusinessFileError, match="blocklist"):
        load_businesses(path)
    path.write_text(
        '[[business]]\nnumber = "+14155550100"\nname = "B"\ntimezone = "UTC"\n'
        'blocklist = ["(415) 555-0666"]\n[business.faq]\n"Hours?" = "8 to 5."\n'
    )
    (business,) = load_businesses(path).businesses
    assert business.blocklist == ["+14155550666"] and business.faq == {"Hours?": "8 to 5."}


def test_prompt_templates_need_every_value() -> None:
    with pytest.raises(KeyError, match="today"):
        render("extraction", business_name="Bay Plumbing")
    text = render("extraction", business_name="Bay Plumbing", today="2025-06-04")
    assert "Bay Plumbing" in text and "2025-06-04" in text and "$" not in text
    with pytest.raises(ValueError, match="not a prompt name"):
        render("../pyproject")
