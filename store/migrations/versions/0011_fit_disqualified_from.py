"""A lead disqualified by its fit remembers the stage it left.

The fit's disqualifiers (a competitor's domain, ...) take a lead out of the funnel on their own. When a
rulebook change, or a corrected e-mail, means they no longer apply, the rules take the lead back to the
stage it left; a lead a person disqualified stays where the person put it. `lead_state.fit_disqualified_from`
holds that stage, NULL for a person's disqualification.

Leads disqualified before this revision are filled in from their stage history: the last change to
`disqualified`, when its reason is one of the disqualify rules of the rulebook version in force at the time
(`disqualified: <the rule's reason>`), was the fit's, and its `from_stage` is the stage the lead left. A
person who typed exactly a rule's reason is read as the fit: the rules then take that lead back only once
its fit no longer disqualifies it either.

Revision ID: 0011
Revises: 0010
"""

import json

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lead_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fit_disqualified_from', sa.String(length=20), nullable=True))
    conn = op.get_bind()
    reasons: dict[int, set[str]] = {}
    for version_id, rules in conn.execute(sa.text("SELECT id, rules FROM rulebook_version")):
        disqualifiers = json.loads(rules).get("fit", {}).get("disqualifiers", [])
        reasons[version_id] = {f"disqualified: {rule['reason']}" for rule in disqualifiers
                               if rule.get("effect") == "disqualify"}
    last = conn.execute(sa.text(
        "SELECT c.lead_id, c.from_stage, c.reason, c.version_id FROM stage_change c "
        "JOIN lead_state s ON s.lead_id = c.lead_id AND s.stage = 'disqualified' "
        "WHERE c.to_stage = 'disqualified' AND c.id = (SELECT MAX(d.id) FROM stage_change d "
        "WHERE d.lead_id = c.lead_id AND d.to_stage = 'disqualified')")).all()
    by_fit = [{"stage": from_stage, "lead_id": lead_id} for lead_id, from_stage, reason, version_id in last
              if from_stage and reason in reasons.get(version_id, set())]
    if by_fit:
        conn.execute(sa.text("UPDATE lead_state SET fit_disqualified_from = :stage WHERE lead_id = :lead_id"), by_fit)


def downgrade() -> None:
    with op.batch_alter_table('lead_state', schema=None) as batch_op:
        batch_op.drop_column('fit_disqualified_from')
