"""The hybrid: an LLM (the local Messages API stand-in) with Optuna tuning between its edits,
in the ratio configured, and the LLM told what tuning found."""

from __future__ import annotations

import pytest
from conftest import MakeProject
from fake_anthropic import FakeAnthropic, text, tool, turn
from loops import engine_for, run
from ratchet.agents import make_agent
from ratchet.agents.hybrid import HybridAgent
from ratchet.config import ConfigError, load_config

KEY_ENV = "RATCHET_TEST_HYBRID_KEY"


def hybrid_config(base_url: str, ratio: int) -> str:
    return f"""\
[loop]
editable = "train.py"
command = "{{python}} train.py"
budget = "10s"

[metric]
name = "score"

[judge]
baseline_runs = 1

[agent]
kind = "anthropic"
api_key_env = "{KEY_ENV}"
base_url = "{base_url}"
tune = "optuna"
tune_ratio = {ratio}
"""


def llm_edit(old: str, new: str, description: str) -> tuple[object, object]:
    return (
        turn(text("An idea."), tool("replace_text", {"path": "train.py", "old_text": old,
                                                     "new_text": new})),
        turn(tool("finish", {"description": description})),
    )  # fmt: skip


async def test_tuning_alternates_with_the_llm_and_the_llm_hears_of_it(
    make_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-ant-test-key")
    with FakeAnthropic() as api:
        api.script(
            *llm_edit('print("training...")', 'print("training!")', "louder start"),
            *llm_edit('print("---")', 'print("----")', "longer rule"),
        )
        root = make_project(config=hybrid_config(api.base_url, 2))
        engine = engine_for(root, agent=None, tag="hy")  # type: ignore[arg-type]
        assert isinstance(engine.agent, HybridAgent) and engine.agent.kind == "anthropic+tune"
        await run(engine, 7)
        rows = engine.ledger.experiments("hy")
        second_llm = api.requests[2].messages[0]["content"][0]["text"]
    labels = ["tune" if "(tune)" in r.description else r.description for r in rows[1:]]
    assert labels == ["louder start", "tune", "tune", "longer rule", "tune", "tune"]
    assert "Between your edits a classical tuner changed constants" in second_llm
    first_tune = rows[2].description.split(" (", 1)[0]
    assert first_tune in second_llm.split("## Everything tried so far", 1)[1]
    # The tuner's proposals changed only constants, on top of the LLM's edit.
    tuned = [r for r in rows if "(tune)" in r.description]
    assert all("→" in r.description for r in tuned)


def test_tune_needs_an_llm_agent(make_project: MakeProject) -> None:
    config = hybrid_config("http://127.0.0.1:9", 2).replace('kind = "anthropic"', 'kind = "mutate"')
    root = make_project(config=config)
    with pytest.raises(ConfigError) as caught:
        make_agent(load_config(root))
    assert "`tune` pairs a tuner with an LLM agent" in caught.value.message
