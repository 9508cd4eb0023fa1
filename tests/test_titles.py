"""Title rules: seniority and job function from real-world titles, in the documented precedence
(see ``SENIORITY_RULES`` / ``FUNCTION_RULES`` in :mod:`leadscore.features`)."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from leadscore.features import FUNCTION_RULES, SENIORITY_RULES, _title_sql
from tests.helpers import ROOT

# ../shared/cases beside the checkout (a worktree sits one folder deeper)
CASES_DIR = next((p / "shared" / "cases" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared" / "cases").is_dir()),
                 ROOT.parent / "shared" / "cases")

# title → (seniority, job function)
TITLES = {
    # the shared job_titles case
    "Vice President of Sales": ("vp", "sales"),
    "Executive Vice President, Marketing": ("vp", "marketing"),
    "Senior Vice President, Global Demand Generation": ("vp", "marketing"),
    "Partner Marketing Manager": ("manager", "marketing"),
    "Channel Partner Manager": ("manager", "sales"),
    "Product Owner": ("individual_contributor", "product"),
    "Executive Assistant to the CEO": ("assistant", "administration"),
    "Assistant to the CFO": ("assistant", "administration"),
    "Lead Generation Specialist": ("individual_contributor", "marketing"),
    "VP Sales": ("vp", "sales"),
    # C-level
    "CEO": ("c_level", "general_management"),
    "Chief Executive Officer": ("c_level", "general_management"),
    "Founder & CEO": ("c_level", "general_management"),
    "Co-Founder and CTO": ("c_level", "it"),
    "Chief Financial Officer": ("c_level", "finance"),
    "CFO": ("c_level", "finance"),
    "Chief Marketing Officer": ("c_level", "marketing"),
    "Chief Revenue Officer": ("c_level", "sales"),
    "Chief Information Security Officer": ("c_level", "it"),
    "Chief People Officer": ("c_level", "hr"),
    "COO": ("c_level", "operations"),
    "President & CEO": ("c_level", "general_management"),
    "President": ("c_level", "general_management"),
    "Owner": ("c_level", "general_management"),
    "Business Owner": ("c_level", "general_management"),
    "Managing Partner": ("c_level", "general_management"),
    "Partner": ("c_level", "general_management"),
    "Partner, Audit & Assurance": ("c_level", "finance"),
    "Managing Director": ("c_level", "general_management"),
    "Geschäftsführer": ("c_level", "general_management"),
    "SVP and Chief Marketing Officer": ("c_level", "marketing"),
    "Chairman of the Board": ("c_level", "general_management"),
    # VP
    "EVP Sales": ("vp", "sales"),
    "SVP, Engineering": ("vp", "engineering"),
    "AVP Finance": ("vp", "finance"),
    "Assistant Vice President, Treasury": ("vp", "finance"),
    "Vice-President Operations": ("vp", "operations"),
    "Head of IT": ("vp", "it"),
    "Head of Talent Acquisition": ("vp", "hr"),
    "Vice President": ("vp", "general_management"),
    # director
    "Director of IT": ("director", "it"),
    "Marketing Director": ("director", "marketing"),
    "Senior Director, Product Management": ("director", "product"),
    "Associate Director of Finance": ("director", "finance"),
    "Assistant Director, Human Resources": ("director", "hr"),
    "Sales & Marketing Director": ("director", "marketing"),
    "General Manager": ("director", "general_management"),
    "Chief of Staff to the CEO": ("director", "general_management"),
    "Directeur Commercial": ("director", "sales"),
    # manager
    "Marketing Manager": ("manager", "marketing"),
    "Senior Product Marketing Manager": ("manager", "marketing"),
    "Key Account Manager": ("manager", "sales"),
    "Partner Account Manager": ("manager", "sales"),
    "Senior Partner Manager": ("manager", "sales"),
    "IT Manager": ("manager", "it"),
    "Engineering Manager": ("manager", "engineering"),
    "Office Manager": ("manager", "administration"),
    "Assistant Manager, Finance": ("manager", "finance"),
    "Marketing Team Lead": ("manager", "marketing"),
    "Sales Team Leader": ("manager", "sales"),
    "Customer Success Lead": ("manager", "sales"),
    "Supply Chain Supervisor": ("manager", "operations"),
    "Revenue Operations Manager": ("manager", "operations"),
    "Marketing Operations Manager": ("manager", "marketing"),
    "HR Manager": ("manager", "hr"),
    # individual contributors
    "Account Executive": ("individual_contributor", "sales"),
    "Marketing Executive": ("individual_contributor", "marketing"),
    "Sales Development Representative (SDR)": ("individual_contributor", "sales"),
    "Business Development Representative": ("individual_contributor", "sales"),
    "Senior Software Engineer": ("individual_contributor", "engineering"),
    "Sales Engineer": ("individual_contributor", "sales"),
    "Data Scientist": ("individual_contributor", "engineering"),
    "Lead Engineer": ("individual_contributor", "engineering"),
    "Systems Administrator": ("individual_contributor", "it"),
    "Financial Analyst": ("individual_contributor", "finance"),
    "Accountant": ("individual_contributor", "finance"),
    "HR Business Partner": ("individual_contributor", "hr"),
    "Recruiter": ("individual_contributor", "hr"),
    "Procurement Specialist": ("individual_contributor", "operations"),
    "Content Strategist": ("individual_contributor", "marketing"),
    "Product Manager": ("manager", "product"),
    "Internal Auditor": ("individual_contributor", "finance"),
    "International Sales Representative": ("individual_contributor", "sales"),
    "Consultant": ("individual_contributor", "other"),
    "Principal Architect": ("individual_contributor", "engineering"),
    "Chief Architect": ("individual_contributor", "engineering"),
    # assistants
    "Personal Assistant": ("assistant", "administration"),
    "Administrative Assistant to the VP of Marketing": ("assistant", "administration"),
    "Marketing Assistant": ("assistant", "marketing"),
    "Sales Coordinator": ("assistant", "sales"),
    "Receptionist": ("assistant", "administration"),
    "Research Assistant": ("assistant", "administration"),
    # students
    "Marketing Intern": ("student", "marketing"),
    "Student": ("student", "other"),
    "MBA Candidate": ("student", "other"),
    "Graduate Student": ("student", "other"),
    "Graduate Trainee, Finance": ("student", "finance"),
    "PhD Candidate, Data Science": ("student", "engineering"),
    # casing, spacing, punctuation
    "  ceo  ": ("c_level", "general_management"),
    "VP\tSALES": ("vp", "sales"),
    "vp-marketing": ("vp", "marketing"),
    "Sr. Director, IT": ("director", "it"),
    "Marketing Team-Lead": ("manager", "marketing"),
    "": ("unknown", "unknown"),
    None: ("unknown", "unknown"),
}


def classify(titles) -> pd.DataFrame:
    con = duckdb.connect()
    frame = pd.DataFrame({"title": pd.Series(list(titles), dtype=object)})
    con.register("l", frame)
    return con.sql(f"SELECT title, {_title_sql(SENIORITY_RULES, 'individual_contributor')} AS seniority, "
                   f"{_title_sql(FUNCTION_RULES, 'other')} AS job_function FROM l").df()


def test_at_least_sixty_real_world_titles_across_every_seniority_and_function():
    assert len(TITLES) >= 60
    assert {s for s, _ in TITLES.values()} >= {label for label, _ in SENIORITY_RULES} | {"individual_contributor"}
    assert {f for _, f in TITLES.values()} >= {label for label, _ in FUNCTION_RULES} | {"other"}


@pytest.mark.parametrize("title", list(TITLES), ids=[repr(t) for t in TITLES])
def test_title_rules(title):
    got = classify([title]).iloc[0]
    assert (got["seniority"], got["job_function"]) == TITLES[title]


def test_the_shared_job_titles_case():
    path = CASES_DIR / "job_titles" / "titles.csv"
    if not path.exists():
        pytest.skip(f"{path} is not on this machine")
    titles = pd.read_csv(path)["title"]
    got = classify(titles).set_index("title")
    for title in titles:
        assert (got.loc[title, "seniority"], got.loc[title, "job_function"]) == TITLES[title], title
    assert got.loc["Vice President of Sales", "seniority"] == "vp"
    assert got.loc["Executive Assistant to the CEO", "job_function"] == "administration"


def test_one_pass_over_many_titles_equals_one_at_a_time():
    many = classify(TITLES)
    assert [tuple(r) for r in many[["seniority", "job_function"]].itertuples(index=False)] == list(TITLES.values())
