"""The sources file: environment interpolation, secrets, and errors that say where and what."""

import pytest

from config.loading import ConfigError
from config.sources import PrefectSecretRef, load_sources
from config.settings import CONFIG_DIR

SHIPPED = CONFIG_DIR / "sources.yaml"


def write(tmp_path, text):
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    return path


def test_shipped_file_needs_no_environment_while_every_source_is_disabled():
    assert load_sources(SHIPPED, env={}) == []


def test_enabling_a_source_without_its_variables_names_the_file_line_and_variable():
    with pytest.raises(ConfigError) as error:
        load_sources(SHIPPED, env={"HANDOFF_MARKETO_ENABLED": "true"})
    line = next(n for n, text in enumerate(SHIPPED.read_text().splitlines(), 1) if "name: marketo" in text)
    assert str(error.value).startswith(f"{SHIPPED}:{line}: source 'marketo': ")
    assert str(error.value).endswith("environment variable HANDOFF_MARKETO_BASE_URL is not set")


def test_credentials_are_secret_and_never_printed():
    env = {"HANDOFF_MARKETO_ENABLED": "true", "HANDOFF_MARKETO_BASE_URL": "https://123-abc.mktorest.com",
           "HANDOFF_MARKETO_CLIENT_ID": "cid", "HANDOFF_MARKETO_CLIENT_SECRET": "s3cr3t-value"}
    [source] = load_sources(SHIPPED, env=env)
    assert source.credentials["client_secret"].get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(source) and "s3cr3t-value" not in str(source.model_dump())
    assert source.form_rules().classify("Whitepaper - Lead Scoring Playbook")[1] == "Lead Scoring Playbook"


def test_a_credential_can_name_a_prefect_secret_block(tmp_path):
    path = write(tmp_path, """
sources:
  - name: marketo
    kind: marketo
    base_url: https://x.mktorest.com
    credentials:
      client_id: cid
      client_secret: {prefect_secret: marketo-client-secret}
""")
    [source] = load_sources(path, env={})
    assert source.credentials["client_secret"] == PrefectSecretRef(prefect_secret="marketo-client-secret")


@pytest.mark.parametrize(
    "body, expected",
    [
        ("sources:\n  - name: m\n    kind: pardot\n    base_url: http://x\n", "kind"),
        ("sources:\n  - name: m\n    kind: marketo\n", "base_url is required"),
        ("sources:\n  - name: f\n    kind: jsonl\n", "path is required"),
        ("sources:\n  - {name: a, kind: jsonl, path: x}\n  - {name: a, kind: jsonl, path: y}\n", "used twice"),
        ("sources:\n  - name: m\n    kind: marketo\n    base_url: http://x\n    colour: blue\n", "colour"),
        ("sources: [\n", "invalid YAML"),
    ],
)
def test_invalid_sources_files_are_refused_with_the_place_and_problem(tmp_path, body, expected):
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as error:
        load_sources(path, env={})
    assert str(path) in str(error.value) and expected in str(error.value)
