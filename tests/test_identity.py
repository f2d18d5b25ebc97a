"""Identity resolution: one lead per person across tools, e-mail first, known source ids next."""

from domain.identity import Identity, NewLead, plan_resolution


def test_same_email_in_two_tools_becomes_one_new_lead_linked_to_both_contacts():
    plan = plan_resolution(
        [Identity("marketo", "101", "ada@acme.example"), Identity("hubspot", "9001", "ada@acme.example")], {}, {}, {}
    )
    assert len(plan.new_leads) == 1
    lead = plan.lead_for(Identity("hubspot", "9001", None))
    assert lead is plan.lead_for(Identity("marketo", "101", None)) is plan.new_leads["ada@acme.example"]
    assert set(plan.links) == {("marketo", "101"), ("hubspot", "9001")}


def test_known_email_decides_the_lead_even_for_a_new_contact_id():
    plan = plan_resolution([Identity("mautic", "7", "ada@acme.example")], {"ada@acme.example": 5}, {}, {5: "ada@acme.example"})
    assert plan.new_leads == {}
    assert plan.links == {("mautic", "7"): 5}


def test_contact_seen_without_email_gets_a_lead_that_claims_the_email_later():
    first = plan_resolution([Identity("hubspot", "9001", None)], {}, {}, {})
    assert isinstance(first.lead_for(Identity("hubspot", "9001", None)), NewLead)
    later = plan_resolution([Identity("hubspot", "9001", "ada@acme.example")], {}, {("hubspot", "9001"): 3}, {3: None})
    assert later.email_claims == {3: "ada@acme.example"}
    assert later.new_leads == {}
    assert later.lead_for(Identity("marketo", None, "ada@acme.example")) == 3


def test_emailless_lead_is_merged_into_the_lead_that_owns_the_email():
    plan = plan_resolution(
        [Identity("hubspot", "9001", "ada@acme.example")],
        {"ada@acme.example": 5},
        {("hubspot", "9001"): 3},
        {3: None, 5: "ada@acme.example"},
    )
    assert plan.merges == {3: 5}
    assert plan.links == {("hubspot", "9001"): 5}


def test_contact_whose_email_changed_moves_to_the_new_address_without_merging_two_people():
    plan = plan_resolution(
        [Identity("hubspot", "9001", "ada@new.example")], {}, {("hubspot", "9001"): 3}, {3: "ada@old.example"}
    )
    assert plan.merges == {}
    assert plan.lead_for(Identity("x", None, "ada@new.example")) is plan.new_leads["ada@new.example"]
    assert plan.links[("hubspot", "9001")] is plan.new_leads["ada@new.example"]


def test_contact_first_seen_without_email_and_then_with_one_in_the_same_batch_is_one_lead():
    plan = plan_resolution(
        [Identity("hubspot", "9001", None), Identity("hubspot", "9001", "ada@acme.example")], {}, {}, {}
    )
    assert len(plan.new_leads) == 1
    lead = next(iter(plan.new_leads.values()))
    assert lead.email == "ada@acme.example"
    assert plan.lead_for(Identity("marketo", None, "ada@acme.example")) is lead
