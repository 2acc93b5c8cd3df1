"""Answers in the caller's language: the token user's preferred_language, else Accept-Language."""
from rtplib import ServerTestCase, main


class German(ServerTestCase):
    def test_user_preference(self):
        user, token = self.create_user("greta", preferred_language="de")
        r = self.s.request("GET", "/auth/users/0", token=token, headers={"Accept-Language": "en"})
        self.assertError(r, 403, "Nur Administratoren oder der Benutzer mit der user_id 0 dürfen auf diesen Endpunkt zugreifen.")
        r = self.s.request("GET", "/auth/users", token=token)
        self.assertError(r, 403, "Nur Administratoren dürfen auf diesen Endpunkt zugreifen.")
        r = self.s.request("PUT", "/auth/users/current", token=token, json_body={"email": "kaputt", "password": "x"})
        self.assertEqual(r.json["errors"], ["Für Nicht-Administratoren ist Basic Auth erforderlich.",
                                            "email: kaputt ist keine gültige E-Mail-Adresse"])
        # an English-speaking user at the same time reads English
        _, english = self.create_user("emma")
        self.assertError(self.s.request("GET", "/auth/users", token=english, headers={"Accept-Language": "de"}), 403,
                         "Only administrators are allowed to access this endpoint.")
        self.assertError(self.s.request("GET", "/experiments/Nope", token=token), 404,
                         "Experiment (Nope) ist nicht in der Datenbank vorhanden.")

    def test_accept_language_for_anonymous_requests(self):
        self.assertError(self.s.request("GET", "/auth/users/current", headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.8"}),
                         401, "Der Zugriff auf diese Ressource erfordert ein gültiges Zugriffstoken.")
        self.assertError(self.s.request("GET", "/auth/users/current", headers={"Accept-Language": "en-US,de;q=0.5"}),
                         401, "Access to this resource requires a valid access-token.")
        self.assertError(self.s.request("GET", "/auth/users/current", headers={"Accept-Language": "fr"}),
                         401, "Access to this resource requires a valid access-token.")
        self.assertError(self.s.request("GET", "/nowhere", headers={"Accept-Language": "de"}), 404,
                         "Die angeforderte URL wurde auf dem Server nicht gefunden.")
        big = b"x" * (1024 * 1024 + 1)
        self.assertError(self.s.request("POST", "/auth/users", body=big, headers={"Accept-Language": "de"}), 413,
                         "Der Body der Anfrage ist zu groß.")


if __name__ == "__main__":
    main()
