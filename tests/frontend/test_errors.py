"""How errors are answered: a page for a browser, the JSON error body for the page's script."""


async def test_an_unknown_page_answers_404_as_a_page(frontend):
    response = await frontend.client.get("/no-such-page")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "No such page" in response.text


async def test_an_unknown_path_answers_404_as_json_to_scripts(frontend):
    response = await frontend.client.get("/no-such-page", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_a_wrong_method_answers_405_in_the_error_shape(frontend):
    response = await frontend.client.get("/logout")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_a_bad_query_value_is_a_validation_error_naming_the_field(frontend):
    response = await frontend.client.get("/login?expired=perhaps")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"] == ["query.expired"]
    assert "perhaps" not in error["message"]


async def test_a_signed_in_users_404_keeps_the_menu_and_the_sign_out(frontend, clock):
    session = await frontend.signed_in(roles=("portfolio",))
    idle_before = frontend.store.idle_deadline(session)
    clock.advance(60)
    response = await frontend.client.get("/no-such-page")
    assert response.status_code == 404
    assert '<nav aria-label="Main">' in response.text
    assert 'href="/services/portfolio"' in response.text
    assert 'action="/logout"' in response.text
    # Showing the error page is not activity.
    stored = await frontend.store.get(session.id)
    assert frontend.store.idle_deadline(stored) == idle_before


async def test_an_anonymous_404_has_no_menu(frontend):
    response = await frontend.client.get("/no-such-page")
    assert '<nav aria-label="Main">' not in response.text


async def test_an_admins_error_on_a_user_action_links_back_to_users(frontend):
    await frontend.signed_in(roles=("admin",))
    response = await frontend.client.get("/admin/users/bob/no-such-action")
    assert response.status_code == 404
    assert '<a href="/admin/users">Back to Users</a>' in response.text


async def test_other_error_pages_link_back_to_the_start_page(frontend):
    await frontend.signed_in(roles=("admin",))
    elsewhere = await frontend.client.get("/no-such-page")
    assert '<a href="/">Back to the start page</a>' in elsewhere.text
    # Users is no way back for someone who is not an admin.
    await frontend.signed_in(roles=("portfolio",))
    not_admin = await frontend.client.get("/admin/users/bob/no-such-action")
    assert not_admin.status_code == 404
    assert '<a href="/">Back to the start page</a>' in not_admin.text
    assert "Back to Users" not in not_admin.text
