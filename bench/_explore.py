import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from kartoteka import create_app
from kartoteka.config import Settings
from kartoteka.metadata.expressions import Clock
from kartoteka.records.model import SYSTEM
from kartoteka.storage.database import create_engine, upgrade
from kartoteka.storage.indexes import sync_indexes
from kartoteka.users import create_user, session_stamp

d = Path(tempfile.mkdtemp())
url = f"sqlite:///{d/'x.db'}"
eng = create_engine(url); upgrade(eng)
app = create_app(Settings(database_url=url, config_dir=Path('bench/config_web'), secret_key='x', instance_dir=d/'inst'), Clock(lambda: datetime.now(UTC)))
st = app.extensions['kartoteka']
sync_indexes(st.engine, st.metadata)
admin = create_user(st.engine, 'admin', ['admin'], datetime.now(UTC))
acc = st.service.create('account', {'name': 'Northwind', 'city': 'London'}, SYSTEM)
w = st.service.create('wide', {'name': 'Wide one', 'account': acc.id, 'manager': admin.id, 'emails': ['a@b.com', 'c@d.org'], 'phones': ['+79123456789'], 'tags': ['VIP', 'x'], 'segments': ['smb', 'partner'], 'unit_price': '100.50', 'quantity': 3, 'cost': '50', 'start_date': '2026-01-01', 'end_date': '2026-12-31', 'signed_at': '2026-01-02T10:00:00Z', 'status': 'active', 'description': 'Line one\nline <two>'}, SYSTEM)
for i in range(3):
    st.service.create('deal', {'name': f'Deal {i}', 'company': acc.id, 'stage': 'proposal', 'amount': str(100 + i), 'close_date': '2026-02-01', 'tags': ['vip']}, admin)
c = app.test_client()
with c.session_transaction() as s:
    s.update(uid=admin.id, stamp=session_stamp(None), csrf='tok')
path = sys.argv[1].replace('ID', str(w.id))
r = c.get(path)
print(r.get_data(as_text=True))
