import json
from pathlib import Path

import pytest

from kit.identifiers import (
    IdentifierError,
    mask_id_number,
    normalise_id_number,
    normalise_uscc,
    validate_licence_id,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "identifiers.json").read_text())


@pytest.mark.parametrize("value", VECTORS["id_number"]["valid"])
def test_id_number_vectors_verify(value: str) -> None:
    assert normalise_id_number(value.lower()) == value


@pytest.mark.parametrize(("value", "reason"), VECTORS["id_number"]["invalid"].items())
def test_id_number_rejections_name_the_rule(value: str, reason: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        normalise_id_number(value)
    assert caught.value.reason == reason
    assert caught.value.zh  # a Chinese message for the page
    assert value not in caught.value.description  # never echoes the number


def test_id_number_agrees_with_python_stdnum_on_random_bodies() -> None:
    stdnum_ric = pytest.importorskip("stdnum.cn.ric")
    import random

    rng = random.Random(7)
    for _ in range(300):
        body = f"110105{rng.randint(1950, 2020)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        body += f"{rng.randint(0, 999):03d}"
        check = stdnum_ric.calc_check_digit(body + "0")  # it ignores the last char
        assert normalise_id_number(body + check) == body + check
        wrong = "0" if check != "0" else "1"
        with pytest.raises(IdentifierError):
            normalise_id_number(body + wrong)


def test_mask_hides_birth_date() -> None:
    masked = mask_id_number("11010519491231002X")
    assert masked == "110*************2X"
    assert "19491231" not in masked


@pytest.mark.parametrize("value", VECTORS["uscc"]["valid"])
def test_uscc_vectors_verify(value: str) -> None:
    assert normalise_uscc(value) == value


@pytest.mark.parametrize(("value", "reason"), VECTORS["uscc"]["invalid"].items())
def test_uscc_rejections_name_the_rule(value: str, reason: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        normalise_uscc(value)
    assert caught.value.reason == reason


@pytest.mark.parametrize("value", VECTORS["licence_id"]["valid"])
def test_licence_id_vectors_verify(value: str) -> None:
    assert validate_licence_id(value) == value


@pytest.mark.parametrize(("value", "reason"), VECTORS["licence_id"]["invalid"].items())
def test_licence_id_rejections(value: str, reason: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_licence_id(value)
    assert caught.value.reason == reason
